"""``aver-fast corrupt``."""
from __future__ import annotations

import argparse

from ..data import CONDITIONS

HELP = "write a copy of a dataset with a controlled-noise condition applied"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="Aff-Wild2-format dataset folder")
    p.add_argument("output", metavar="OUT", help="output folder (must differ from IN)")
    p.add_argument("--condition", required=True,
                   help=f"a preset ({', '.join(CONDITIONS)}) or a spec like 'white:snr_db=5+occlusion:fraction=0.5'")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable videos instead of stopping")


def run(args: argparse.Namespace) -> int:
    from ..data import corrupt_dataset, parse_condition

    parse_condition(args.condition)  # a bad spec fails before any file is read
    summary = corrupt_dataset(args.input, args.output, args.condition, seed=args.seed, skip_bad=args.skip_bad)
    print(f"wrote {summary.videos} videos to {args.output} ({args.condition}); {len(summary.skipped)} skipped")
    for path, problem in summary.skipped:
        print(f"  skipped {path}: {problem}")
    return 0
