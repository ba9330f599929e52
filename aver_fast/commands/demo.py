"""``aver-fast demo``: write a small synthetic benchmark as real media files, train the ``tiny`` presets of AVER,
JCA and leader-follower on it through the same loader as Aff-Wild2, and evaluate them on clean and noisy test videos
(:mod:`aver_fast.demo`). CPU only, no network."""
from __future__ import annotations

import argparse

from ..demo import run_demo
from ..models import MODELS

HELP = "write a synthetic benchmark, train the tiny AVER/JCA/LF presets on it and print test CCC on clean and noisy " \
       "conditions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="aver-demo", help="output folder: data/, results.json, timings.json "
                                                      "(default: aver-demo/)")
    p.add_argument("--steps", type=int, default=200, help="training steps per model (default: 200)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    p.add_argument("--videos", type=int, default=10, help="synthetic videos to generate (default: 10)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each synthetic video (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")


def run(args: argparse.Namespace) -> int:
    models = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    run_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed, models=models,
             videos=args.videos, seconds=args.seconds)
    return 0
