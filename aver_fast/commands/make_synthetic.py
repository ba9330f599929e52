"""``aver-fast make-synthetic``."""
from __future__ import annotations

import argparse

HELP = "write a synthetic Aff-Wild2-format dataset (mp4 with audio + VA annotation files) driven by smooth " \
       "valence/arousal traces"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (gets videos/, annotations/, synthetic.json)")
    p.add_argument("--videos", type=int, default=8, help="number of videos (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each video in seconds (default: 30)")
    p.add_argument("--size", type=int, default=112, help="frame side in pixels (default: 112)")


def run(args: argparse.Namespace) -> int:
    from ..data import make_synthetic

    names = make_synthetic(args.out, videos=args.videos, seed=args.seed, seconds=args.seconds, size=args.size)
    print(f"wrote {len(names)} videos to {args.out}")
    return 0
