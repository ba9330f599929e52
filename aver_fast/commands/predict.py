"""``aver-fast predict VIDEO``: per-frame valence/arousal as CSV, and two plots: the time trace (valence blue,
arousal orange, ground truth dashed when given) and the trajectory in valence-arousal space."""
from __future__ import annotations

import argparse
import json
import os

from ..config import TrainConfig
from ..data import AffWild2Dataset
from ..inference import BATCH_SIZE, load_model, predict_frames
from ..plots import plot

HELP = "per-frame valence/arousal CSV and plots for one video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file or frame folder")
    p.add_argument("--checkpoint", required=True, help="checkpoint prefix, e.g. runs/aver/best")
    p.add_argument("--labels", help="annotation file: ground truth drawn dashed")
    p.add_argument("--out", default="predictions", help="output folder")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")


def predict_video(video: str, checkpoint: str, out: str, labels: str | None = None,
                  batch_size: int = BATCH_SIZE) -> dict:
    """Write ``out/<name>.csv`` (frame, time_s, valence, arousal) and the two plots; ``batch_size`` windows run at
    once (peak memory grows with it, not with the video's length)."""
    model, state = load_model(checkpoint)
    cfg = TrainConfig(**state["config"])
    ds = AffWild2Dataset.from_video(video, cfg.alignment(), labels=labels)
    rec = next(iter(predict_frames(model, ds, batch_size).values()))
    frames, gt = rec["frames"], rec["labels"] if labels else None
    os.makedirs(out, exist_ok=True)
    name = ds.entries[0].name
    csv_path = os.path.join(out, f"{name}.csv")
    with open(csv_path + ".tmp", "w") as f:
        f.write("frame,time_s,valence,arousal\n")
        for i, (v, a) in enumerate(frames.tolist()):
            f.write(f"{i},{i / ds.entries[0].fps:.3f},{v:.5f},{a:.5f}\n")
    os.replace(csv_path + ".tmp", csv_path)
    plots = plot(frames, gt, ds.entries[0].fps, os.path.join(out, name))
    return {"csv": csv_path, **plots}


def run(args: argparse.Namespace) -> int:
    print(json.dumps(predict_video(args.video, args.checkpoint, args.out, args.labels, args.batch_size)))
    return 0
