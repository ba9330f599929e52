"""``aver-fast corrupt IN OUT --condition ...``: write a corrupted copy of an Aff-Wild2-format dataset."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from .corruptions import Clip, parse_condition
from .dataset import Summary, discover
from .media import VideoSource, load_audio, write_video


def _corrupted_frames(e, source: VideoSource, wave: np.ndarray, pool: list, chunk: int, cond, seed: tuple[int, int],
                      sample_rate: int, audio_out: np.ndarray):
    """The frames of video ``e`` with ``cond`` applied ``chunk`` frames at a time (RNG seeded by ``(*seed, chunk
    index)``); each chunk's corrupted audio is written into ``audio_out`` as its frames are yielded."""
    for ci, f0 in enumerate(range(0, e.frames, chunk)):
        f1 = min(e.frames, f0 + chunk)
        a0, a1 = int(round(f0 / e.fps * sample_rate)), int(round(f1 / e.fps * sample_rate))
        piece = np.zeros(a1 - a0, dtype=np.float32)
        avail = wave[a0:min(a1, wave.shape[0])]
        piece[:avail.shape[0]] = avail
        clip = cond(Clip(source.frames(np.arange(f0, f1)), piece, sample_rate, pool),
                    np.random.default_rng([*seed, ci]))
        audio_out[a0:a1] = clip.audio[:a1 - a0]
        yield from clip.frames


def corrupt_dataset(src: str, dst: str, condition: str, seed: int = 0, sample_rate: int = 44100,
                    chunk_seconds: float = 10.0, skip_bad: bool = False, log=print) -> Summary:
    """Apply ``condition`` to every video of ``src`` in ``chunk_seconds`` pieces (audio SNRs are per piece) and
    write ``dst/videos/*.mp4``, ``dst/annotations/*.txt`` and ``dst/condition.json`` (name, parameters, seed)."""
    cond = parse_condition(condition)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("OUT must differ from IN (the corrupted copy never overwrites the original)")
    summary = Summary()
    entries = discover(src, skip_bad=skip_bad, summary=summary)
    os.makedirs(os.path.join(dst, "videos"), exist_ok=True)
    os.makedirs(os.path.join(dst, "annotations"), exist_ok=True)
    waves = {e.name: load_audio(e.media, sample_rate).samples.numpy() for e in entries}
    for vi, e in enumerate(entries):
        source = VideoSource(e.media, fps=e.fps)
        wave = waves[e.name]
        pool = [w for name, w in waves.items() if name != e.name] or [wave]
        chunk = max(1, int(chunk_seconds * e.fps))
        n_samples = int(round(e.frames / e.fps * sample_rate))
        audio_out = np.zeros(n_samples, dtype=np.float32)

        frames = _corrupted_frames(e, source, wave, pool, chunk, cond, (seed, vi), sample_rate, audio_out)
        # write_video encodes the audio after the last frame, by which time the frames have filled audio_out
        write_video(os.path.join(dst, "videos", e.name + ".mp4"), frames, e.fps, audio_out, sample_rate)
        shutil.copyfile(e.annotation, os.path.join(dst, "annotations", e.name + ".txt"))
        log(f"{e.name}: {e.frames} frames -> {condition}")
    summary.videos = len(entries)
    with open(os.path.join(dst, "condition.json"), "w") as f:
        json.dump({"condition": cond.name, "transforms": cond.params, "seed": seed, "source": os.path.abspath(src),
                   "skipped": summary.skipped}, f, indent=2)
    return summary
