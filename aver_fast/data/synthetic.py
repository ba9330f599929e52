"""A synthetic Aff-Wild2-format benchmark written as real files (mp4 with audio + annotation txt).

Smooth random valence/arousal traces drive both modalities, so a model can learn them but no single modality
carries everything:

* video: a rendered face whose mouth curvature and brows follow valence and whose eye opening and head motion follow
  arousal;
* audio: a voice-like harmonic source whose pitch, loudness and syllable rate follow arousal and whose spectral
  tilt follows valence.

Some segments of each video are visually uninformative (the face leaves the frame: a blank card) and some
acoustically uninformative (only background noise), never both at once, so fusion matters. A short span of each
annotation is marked invalid (-5), as in Aff-Wild2.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from .annotations import INVALID, write_va
from .media import write_video


def smooth_trace(n: int, rng: np.random.Generator, fps: float) -> np.ndarray:
    """A smooth random trace in [-0.9, 0.9]: a few slow sinusoids (periods of 2-20 s)."""
    t = np.arange(n) / fps
    x = np.zeros(n)
    for _ in range(4):
        x += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / rng.uniform(2.0, 20.0) + rng.uniform(0, 2 * np.pi))
    x -= x.mean()
    return 0.9 * x / (np.abs(x).max() + 1e-9)


def _segments(n: int, rng: np.random.Generator, fps: float, count: int) -> np.ndarray:
    """Boolean mask of ``count`` random 1-3 s segments."""
    mask = np.zeros(n, dtype=bool)
    for _ in range(count):
        length = int(rng.uniform(1.0, 3.0) * fps)
        start = int(rng.integers(0, max(1, n - length)))
        mask[start:start + length] = True
    return mask


def render_face(valence: float, arousal: float, phase: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 ``(size, size, 3)`` frame of a schematic face."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1  # [-1, 1]
    # head motion grows with arousal
    amp = 0.02 + 0.10 * (arousal + 1) / 2
    cx, cy = amp * np.sin(phase * 3.1), amp * np.cos(phase * 2.3)
    x, y = xx - cx, yy - cy
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = (0.25 + 0.1 * yy[..., None]) * np.array([0.6, 0.7, 0.9])  # background
    face = (x / 0.62) ** 2 + (y / 0.8) ** 2 < 1
    img[face] = np.array([0.85, 0.68, 0.55])

    def paint(mask, color):
        img[mask & face] = color

    openness = 0.02 + 0.10 * (arousal + 1) / 2  # eye opening follows arousal
    for ex in (-0.25, 0.25):
        paint(((x - ex) / 0.13) ** 2 + ((y + 0.2) / openness) ** 2 < 1, np.array([0.05, 0.05, 0.08]))
        # brows: raised and tilted up with positive valence, lowered and frowning with negative
        brow_y = -0.42 - 0.08 * valence + 0.12 * valence * np.abs(x - ex) * np.sign(ex) * np.sign(x - ex)
        paint((np.abs(x - ex) < 0.17) & (np.abs(y - brow_y) < 0.025), np.array([0.25, 0.15, 0.1]))
    # mouth: a parabola whose curvature follows valence (smile / frown), width slightly with arousal
    width = 0.28 + 0.06 * arousal
    mouth_y = 0.38 + 0.9 * valence * (width ** 2 - x ** 2)  # image y points down: centre lower = smile
    paint((np.abs(x) < width) & (np.abs(y - mouth_y) < 0.035), np.array([0.55, 0.1, 0.12]))
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)  # sensor noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def voice(valence: np.ndarray, arousal: np.ndarray, fps: float, sample_rate: int,
          rng: np.random.Generator) -> np.ndarray:
    """Voice-like audio for per-frame traces: pitch, loudness and syllable rate follow arousal, the spectral tilt
    follows valence (brighter for positive valence)."""
    n = int(round(len(valence) / fps * sample_rate))
    t_frames = np.arange(len(valence)) / fps
    t = np.arange(n) / sample_rate
    v, a = np.interp(t, t_frames, valence), np.interp(t, t_frames, arousal)
    f0 = 110 + 90 * (a + 1) / 2 + 6 * np.sin(2 * np.pi * 5 * t)  # pitch (with vibrato)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tilt = 1.6 - 0.8 * v  # spectral tilt: amplitude of harmonic h ~ h^-tilt
    wave = np.zeros(n)
    for h in range(1, 16):
        ok = f0 * h < sample_rate / 2 - 500
        wave += ok * np.sin(h * phase) * h ** (-tilt)
    rate = 2.0 + 4.0 * (a + 1) / 2  # syllables per second
    syllables = 0.5 * (1 - np.cos(2 * np.pi * np.cumsum(rate) / sample_rate))
    loudness = 0.05 + 0.25 * (a + 1) / 2
    wave = wave / (np.abs(wave).max() + 1e-9) * loudness * syllables
    return (wave + 0.003 * rng.standard_normal(n)).astype(np.float32)


MIN_SIZE, MAX_SIZE = 16, 4096  # frame side in pixels
MIN_SECONDS, MAX_SECONDS = 2.0, 3600.0


def make_synthetic(out: str | os.PathLike, videos: int = 8, seed: int = 0, seconds: float = 30.0, fps: float = 30.0,
                   size: int = 112, sample_rate: int = 44100) -> list[str]:
    """Write ``videos`` videos as ``out/videos/synth_XXX.mp4`` and ``out/annotations/synth_XXX.txt``; returns the
    names. Deterministic in ``seed``. Also writes ``out/synthetic.json`` with the settings. ``size``: an even number of
    pixels (H.264's 4:2:0 chroma halves each side), at least 16; ``seconds`` at least 2 (each video has a
    half-second unlabelled stretch, placed at least a second before its end)."""
    if isinstance(videos, bool) or not isinstance(videos, int) or videos < 1:
        raise ValueError(f"videos must be a whole number >= 1, got {videos!r}")
    if not (isinstance(size, int) and size >= MIN_SIZE and size % 2 == 0 and size <= MAX_SIZE):
        raise ValueError(f"size must be an even number of pixels in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS):
        raise ValueError(f"seconds must be in [{MIN_SECONDS:g}, {MAX_SECONDS:g}], got {seconds!r}")
    if not (math.isfinite(fps) and 1 <= fps <= 240):
        raise ValueError(f"fps must be in [1, 240], got {fps!r}")
    os.makedirs(os.path.join(out, "videos"), exist_ok=True)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    names = []
    for i in range(videos):
        rng = np.random.default_rng([seed, i])
        n = int(seconds * fps)
        val, aro = smooth_trace(n, rng, fps), smooth_trace(n, rng, fps)
        blank_video = _segments(n, rng, fps, 2)
        mute_audio = _segments(n, rng, fps, 2) & ~blank_video
        phases = np.cumsum(0.05 + 0.25 * (aro + 1) / 2)  # head motion speed also follows arousal
        card = np.full((size, size, 3), 96, dtype=np.uint8)
        frames = (card if blank_video[k] else render_face(val[k], aro[k], phases[k], size, rng) for k in range(n))
        audio = voice(val, aro, fps, sample_rate, rng)
        spf = sample_rate / fps
        for k in np.flatnonzero(mute_audio):
            audio[int(k * spf):int((k + 1) * spf)] = 0.003 * rng.standard_normal(int((k + 1) * spf) - int(k * spf))
        name = f"synth_{i:03d}"
        write_video(os.path.join(out, "videos", name + ".mp4"), frames, fps, audio, sample_rate)
        labels = np.stack([val, aro], axis=1)
        invalid = int(rng.integers(0, n - int(fps)))
        labels[invalid:invalid + int(0.5 * fps)] = INVALID
        write_va(os.path.join(out, "annotations", name + ".txt"), labels)
        names.append(name)
    with open(os.path.join(out, "synthetic.json"), "w") as f:
        json.dump(dict(videos=videos, seed=seed, seconds=seconds, fps=fps, size=size, sample_rate=sample_rate), f)
    return names
