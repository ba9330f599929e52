"""``aver-fast predict VIDEO|DIR|GLOB``: one valence/arousal prediction per frame, as CSV, with two plots per video
(the time trace and the trajectory in valence-arousal space); many videos with one progress bar, resumable, and a
summary CSV; ``--stream``: a live source, rows written as they are produced (:mod:`aver_fast.predict_videos`)."""
from __future__ import annotations

import argparse
import json
import os

from ..data.faces import FACE_HELP, FACE_MODES
from ..models.precision import PRECISION, PRECISION_HELP, PRECISIONS
from ..predict_videos import SUMMARY, Settings, find_videos, predict_many, predict_stream, predict_video
from ..streaming import BATCH_SIZE, RULE, RULES

HELP = "per-frame valence/arousal CSV and plots for videos, or a live source (--stream)"


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(args.rule, args.step, args.batch_size, args.precision, args.faces)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file, a frame folder, a folder of videos, a glob ('clips/*.mp4'), or with "
                                 "--stream any source PyAV opens (file, URL, device)")
    p.add_argument("--checkpoint", required=True, help="checkpoint prefix, e.g. runs/aver/best")
    p.add_argument("--labels", help="annotation file (one video only): ground truth drawn dashed")
    p.add_argument("--out", default="predictions", help="output folder")
    p.add_argument("--rule", choices=RULES, default=RULE,
                   help=f"which window predicts which frame (default: {RULE}, the paper's evaluation: each frame "
                        "by the step of its non-overlapping window; causal: each frame by the window ending at it, "
                        "known as soon as the frame arrives)")
    p.add_argument("--step", type=int,
                   help="with --rule causal: frames between predicted windows; must divide the sub-sequence length "
                        "(32 at paper size). 1 (default): every frame its own window; backbone work is frames / step "
                        "sub-sequences")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISION, help=PRECISION_HELP)
    p.add_argument("--faces", choices=FACE_MODES, default="auto", help=FACE_HELP["video"] + " (default: auto)")
    p.add_argument("--stream", action="store_true",
                   help="read the source progressively and write each CSV row as soon as it is known, with its "
                        "latency (with --rule causal a frame is known when it arrives; with windows, when its window "
                        "ends)")
    p.add_argument("--realtime", action="store_true", help="with --stream: deliver a file at its real-time pace")
    p.add_argument("--force", action="store_true", help="redo videos whose CSV is already complete")


def run(args: argparse.Namespace) -> int:
    from ..training import distributed

    rank, world = distributed.init("gloo")  # under torchrun: the videos are shared among the processes (CPU models)
    try:
        return _run(args, rank, world)
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace, rank: int, world: int) -> int:
    if world > 1 and (args.stream or args.labels):
        raise ValueError("--stream and --labels run in one process: start predict without torchrun")
    if args.stream:
        print(json.dumps(predict_stream(args.video, args.checkpoint, args.out, settings_from_args(args),
                                        args.realtime)))
        return 0
    if args.realtime:
        raise ValueError("--realtime paces a --stream source; add --stream")
    videos = find_videos(args.video)
    if len(videos) == 1 and os.path.samefile(videos[0], args.video) and world == 1:  # one video named: (re)done
        print(json.dumps(predict_video(videos[0], args.checkpoint, args.out, args.labels, settings_from_args(args))))
        return 0
    if args.labels:
        raise ValueError("--labels names the ground truth of one video; give one video with it")
    results = predict_many(videos, args.checkpoint, args.out, settings_from_args(args), args.force, rank, world)
    failed = [r for r in results if r["status"].startswith("failed")]
    if rank == 0:
        print(json.dumps({"summary": os.path.join(args.out, SUMMARY), "videos": len(results),
                          "done": sum(r["status"] == "done" for r in results),
                          "skipped": sum(r["status"].startswith("skipped") for r in results),
                          "failed": len(failed)}))
    return 1 if failed else 0
