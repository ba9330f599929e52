"""Per-frame predictions of videos as files (``aver-fast predict``): a CSV per video and two plots (the time trace and
the trajectory in valence-arousal space), each CSV's record of what made it; many videos under one progress bar,
resumable, with a summary CSV; a live source with rows written as they are produced. The frames' values come from
:mod:`aver_fast.streaming`."""
from __future__ import annotations

import glob
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

from .checkpoint import checkpoint_digest, sha256_file
from .data import MediaError
from .data.media import VIDEO_EXTS, frame_files
from .models.precision import PRECISION
from .streaming import BATCH_SIZE, RULE

CSV_HEADER = "frame,time_s,valence,arousal"
SUMMARY = "summary.csv"
RECORD = ".predict.json"  # <stem>.predict.json beside <stem>.csv: what made the CSV, and its SHA-256


@dataclass(frozen=True)
class Settings:
    """How frames are predicted (each setting is an option of the same name; see :mod:`aver_fast.streaming`)."""

    rule: str = RULE
    step: int | None = None  # rule "causal" only (default 1)
    batch_size: int = BATCH_SIZE
    precision: str = PRECISION
    faces: str = "auto"


def find_videos(spec: str) -> list[str]:
    """A video file or frame folder; a folder of videos; or a glob. Sorted; an empty result is an error. A folder
    holding videos is a folder of videos (its images, e.g. plots or a cover, are not frames); one without videos
    must be a frame folder of numbered frames only, else an error names what does not fit."""
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        found = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                       if f.lower().endswith(VIDEO_EXTS) and os.path.isfile(os.path.join(spec, f)))
        if found:
            return found
        frame_files(spec)  # raises, naming the file, unless the folder is numbered frames
        return [spec]
    found = sorted(f for f in glob.glob(spec) if os.path.isdir(f) or f.lower().endswith(VIDEO_EXTS))
    if not found:
        raise MediaError(spec, "no such video, folder, or videos matching the pattern")
    return found


def _name(path: str) -> str:
    """The stem of a video's outputs (``<stem>.csv``, ``<stem>.predict.json``, ``<stem>_trace.png``, ``_va.png``);
    a video whose stem is a batch output's (``summary``) gets ``<stem>.video``, so no two outputs share a name."""
    stem = os.path.splitext(os.path.basename(path.rstrip(os.sep)))[0]
    return f"{stem}.video" if stem == os.path.splitext(SUMMARY)[0] else stem


def _provenance(video: str, checkpoint: str, settings: Settings) -> dict:
    """What a video's CSV depends on: the video's content, the checkpoint, the settings (the batch size changes
    nothing), the version and what decoding gives."""
    from ._version import __version__
    from .data.media import DECODING_VERSION, content_digest

    made = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
    return {"video_content": content_digest(video), "checkpoint": checkpoint_digest(checkpoint), **made,
            "aver_fast": __version__, "decoding": DECODING_VERSION}


def _record_path(csv_path: str) -> str:
    return os.path.splitext(csv_path)[0] + RECORD


def _read_record(csv_path: str) -> dict | None:
    """The record of ``csv_path`` if it is one (a JSON table with the CSV's digest), else None."""
    try:
        with open(_record_path(csv_path)) as f:
            record = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("made_by"), dict) and \
        isinstance(record.get("report"), dict) and isinstance(record.get("csv_sha256"), str)
    return record if ok else None


def check_ours(csv_path: str) -> None:
    """Refuse to replace a ``<stem>.csv`` (or its record) that ``predict`` did not write: a file of the user's
    that happens to share the name (``--out`` pointed at a folder of their own files), a link or a folder."""
    for path in (csv_path, _record_path(csv_path)):
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            raise MediaError(path, "is a link or a folder where predict writes its output; move it away or choose "
                                   "another --out")
    if os.path.isfile(csv_path):
        with open(csv_path, "rb") as f:
            first = f.readline(len(CSV_HEADER) + 16).rstrip(b"\r\n").decode("utf-8", "replace")
        if not first.startswith(CSV_HEADER):
            raise MediaError(csv_path, "exists and was not written by aver-fast predict; move it away or choose "
                                       "another --out")
    if os.path.isfile(_record_path(csv_path)) and _read_record(csv_path) is None:
        raise MediaError(_record_path(csv_path), "exists and is not a predict record; move it away or choose "
                                                 "another --out")


def completed(video: str, out: str, provenance: dict) -> tuple[dict | None, str]:
    """``(report, why)``: the earlier report of ``video`` when its CSV in ``out`` is complete (its record
    ``<stem>.predict.json`` exists and holds the CSV's SHA-256) and was made from the same video content,
    checkpoint and settings; else None and why it must be (re)done."""
    csv_path = os.path.join(out, f"{_name(video)}.csv")
    if not os.path.isfile(csv_path):
        return None, "new"
    record = _read_record(csv_path)
    if record is None or record["csv_sha256"] != sha256_file(csv_path):
        return None, "redone (its CSV was incomplete)"
    changed = [k for k in provenance if record["made_by"].get(k) != provenance[k]]
    if changed:
        return None, f"redone (made with another {', '.join(changed)})"
    return record["report"], "skipped (already complete)"


def _write_record(csv_path: str, report: dict, provenance: dict) -> None:
    """``<stem>.predict.json`` beside a finished CSV: what made it and the CSV's SHA-256 (written last: its presence
    and digest are what make the CSV count as complete)."""
    path = _record_path(csv_path)
    with open(path + ".tmp", "w") as f:
        json.dump({"csv_sha256": sha256_file(csv_path), "made_by": provenance, "report": report}, f)
    os.replace(path + ".tmp", path)


def predict_video(video: str, checkpoint: str, out: str, labels: str | None = None, settings: Settings = Settings(),
                  loaded=None, progress=None, made_by: dict | None = None) -> dict:
    """Write ``out/<name>.csv`` (frame, time_s, valence, arousal: one row per frame) and the two plots. The CSV is
    written under a temporary name and renamed when complete, then its record (``made_by``: the provenance, computed
    here unless given)."""
    import numpy as np
    import torch

    from .data import VideoSource, read_va
    from .inference import load_model
    from .plots import plot
    from .streaming import predict_file
    from .training import TrainConfig

    gt = None
    if labels:  # checked before any work
        gt = torch.from_numpy(np.asarray(read_va(labels), dtype=np.float32))
        if gt.shape[0] != len(VideoSource(video)):
            raise MediaError(labels, f"has {gt.shape[0]} frames but {video} has {len(VideoSource(video))}")
    csv_path = os.path.join(out, f"{_name(video)}.csv")
    check_ours(csv_path)  # before any work
    model, state = loaded or load_model(checkpoint, settings.precision)
    cfg = TrainConfig.from_dict(state["config"], f"{checkpoint} config")
    made_by = made_by or _provenance(video, checkpoint, settings)
    t0 = time.perf_counter()
    frames, predictor = predict_file(model, video, cfg.alignment(), settings.step, settings.batch_size,
                                     state["precision"], settings.faces,
                                     (lambda rows: progress(len(rows))) if progress else None, settings.rule)
    wall = time.perf_counter() - t0
    os.makedirs(out, exist_ok=True)
    name = _name(video)
    _forget_record(csv_path)
    with open(csv_path + ".tmp", "w") as f:
        f.write(CSV_HEADER + "\n")
        for i, (v, a) in enumerate(frames.tolist()):
            f.write(f"{i},{i / predictor.fps:.3f},{v:.5f},{a:.5f}\n")
    os.replace(csv_path + ".tmp", csv_path)
    title = f"{state['arch'][0]} ({os.path.basename(checkpoint.rstrip(os.sep))}) on {name}"
    plots = plot(frames, gt, predictor.fps, os.path.join(out, name), title=title)
    seconds = frames.shape[0] / predictor.fps
    report = {"video": video, "csv": csv_path, **plots, "frames": frames.shape[0], "seconds": round(seconds, 3),
              "mean_valence": round(frames[:, 0].nanmean().item(), 5),
              "mean_arousal": round(frames[:, 1].nanmean().item(), 5),
              "frames_without_face": int(torch.isnan(frames[:, 0]).sum()),
              "wall_s": round(wall, 3), "video_s_per_s": round(seconds / wall, 3) if wall > 0 else None,
              "backbone_subsequences": predictor.backbone_calls, "precision": state["precision"]}
    _write_record(csv_path, report, made_by)
    return report


def _forget_record(csv_path: str) -> None:
    """Remove the record of an earlier CSV about to be replaced (checked to be ours by :func:`check_ours`): a run
    killed from here on leaves no record, so the CSV it leaves never counts as complete."""
    if os.path.isfile(_record_path(csv_path)):
        os.remove(_record_path(csv_path))


def predict_many(videos: list[str], checkpoint: str, out: str, settings: Settings = Settings(),
                 force: bool = False, rank: int = 0, world: int = 1) -> list[dict]:
    """Every video in turn under one progress bar (frames). A video whose CSV is complete and was made by the same
    video content, checkpoint and settings is skipped (its earlier summary row kept) unless ``force``; any other
    is (re)done, and the summary says why. A video that fails, whatever the error, is recorded and the others go
    on. Writes ``out/summary.csv`` after each video.

    Under ``torchrun`` (``world`` processes, this one ``rank``; :func:`aver_fast.training.distributed.init`) each
    process takes every ``world``-th video from ``rank`` on, so each video is done once; the reports are gathered
    and rank 0 writes the summary at the end. Returns every video's report, in order, on every rank."""
    from tqdm import tqdm

    from .data import VideoSource
    from .inference import load_model
    from .training import distributed

    names = [_name(v) for v in videos]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise ValueError(f"several videos share a name ({sorted(clash)}): their outputs would overwrite each other")
    loaded = load_model(checkpoint, settings.precision)
    results: dict[str, dict] = {}
    todo: list[tuple[str, str, dict]] = []
    for v in videos[rank::world]:
        try:
            made_by = _provenance(v, checkpoint, settings)
        except (OSError, ValueError) as e:
            results[v] = {"video": v, "status": f"failed: {e}"}
            continue
        earlier, why = (None, "redone (--force)") if force else completed(v, out, made_by)
        if earlier is not None:
            results[v] = {**earlier, "status": why}
        else:
            todo.append((v, why, made_by))
    total = 0
    for v, _, _ in todo:
        try:
            total += len(VideoSource(v))
        except MediaError:
            pass  # reported when the video itself is read
    with tqdm(total=total, unit="frame", desc="predict" if world == 1 else f"predict (rank {rank}/{world})",
              disable=None if rank == 0 else True) as bar:
        for v, why, made_by in todo:
            try:
                r = predict_video(v, checkpoint, out, None, settings, loaded, bar.update, made_by)
                results[v] = {**r, "status": "done" if why == "new" else why}
            except Exception as e:  # noqa: BLE001 -- one video's failure, whatever it is, never stops the batch
                results[v] = {"video": v, "status": f"failed: {type(e).__name__}: {e}"
                              if not isinstance(e, (MediaError, OSError)) else f"failed: {e}"}
            if world == 1:
                _write_summary([results[u] for u in videos if u in results], out)
    results = distributed.merged(results, world)
    ordered = [results[v] for v in videos]
    if rank == 0:
        _write_summary(ordered, out)
    return ordered


def _write_summary(results: list[dict], out: str) -> None:
    import csv

    os.makedirs(out, exist_ok=True)
    fields = ["video", "status", "frames", "seconds", "frames_without_face", "mean_valence", "mean_arousal", "wall_s",
              "video_s_per_s", "precision", "csv"]
    path = os.path.join(out, SUMMARY)
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    os.replace(path + ".tmp", path)


def predict_stream(source: str, checkpoint: str, out: str, settings: Settings = Settings(batch_size=1),
                   realtime: bool = False) -> dict:
    """Rows ``frame,time_s,valence,arousal,latency_s`` appended to ``out/<name>.csv`` (flushed) as each becomes
    known; returns the latency statistics."""
    from .data.faces import OnlineFaces, resolve_faces
    from .data.media import iter_stream
    from .inference import load_model
    from .streaming import FramePredictor
    from .training import TrainConfig

    model, state = load_model(checkpoint, settings.precision)
    cfg = TrainConfig.from_dict(state["config"], f"{checkpoint} config").alignment()
    fps, items = iter_stream(source, cfg.sample_rate, realtime)
    faces = OnlineFaces(fps) if resolve_faces(settings.faces, source) == "detect" else None
    predictor = FramePredictor(model, cfg, fps, settings.step, settings.batch_size, state["precision"], faces,
                               settings.rule)
    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, f"{_name(source) or 'stream'}.csv")
    check_ours(csv_path)
    _forget_record(csv_path)  # a stream's CSV (with latencies) is never taken for a finished file's
    latencies: list[float] = []
    with open(csv_path, "w") as f:
        f.write(CSV_HEADER + ",latency_s\n")

        def write(rows) -> None:
            for r in rows:
                f.write(f"{r.frame},{r.time_s:.3f},{r.valence:.5f},{r.arousal:.5f},{r.latency_s:.4f}\n")
                latencies.append(r.latency_s)
            f.flush()
        for frames, audio in items:
            write(predictor.push(frames, audio))
        write(predictor.finish())
    report = {"csv": csv_path, "frames": len(latencies), "fps": fps, "backbone_subsequences": predictor.backbone_calls,
              "precision": state["precision"]}
    if latencies:
        ordered = sorted(latencies)
        report |= {"latency_median_s": round(statistics.median(ordered), 4),
                   "latency_p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 4),
                   "latency_max_s": round(ordered[-1], 4)}
    return report
