"""``aver-fast evaluate``: CCC of valence/arousal per condition for one or more checkpoints, raw and with the
public code's post-processing; a markdown table and JSON (:mod:`aver_fast.evaluation`)."""
from __future__ import annotations

import argparse

from ..data.faces import FACE_HELP, FACE_MODES
from ..evaluation import PUBLIC_SMOOTHING_EDGES, SMOOTHING_EDGES, evaluate, markdown, write_report
from ..models.precision import PRECISION, PRECISION_HELP, PRECISIONS
from ..streaming import BATCH_SIZE, RULE, RULES

HELP = "CCC per condition for one or more checkpoints (markdown + JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="checkpoint prefixes, e.g. runs/aver/best runs/jca/best")
    p.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder")
    p.add_argument("--conditions", default="clean", help="comma-separated conditions (presets or specs)")
    p.add_argument("--videos", help="comma-separated videos (default: each checkpoint's test split)")
    p.add_argument("--out", default="evaluation", help="folder for evaluation.md and evaluation.json")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")
    p.add_argument("--smoothing-edges", choices=SMOOTHING_EDGES, default=PUBLIC_SMOOTHING_EDGES,
                   help="how the post-processing moving average treats the ends of a video (scipy's modes; "
                        f"default: {PUBLIC_SMOOTHING_EDGES}, zeros, as the public evaluation)")
    p.add_argument("--faces", choices=FACE_MODES,
                   help=FACE_HELP["dataset"] + " (default: what the checkpoint's run used)")
    p.add_argument("--rule", choices=RULES, default=RULE,
                   help=f"which window predicts which frame (default: {RULE}, the public evaluation's); causal: as "
                        "predict --rule causal, each window computed whole (window / step times the backbone work)")
    p.add_argument("--step", type=int, help="with --rule causal: frames between predicted windows (default: 1)")
    p.add_argument("--precision", choices=PRECISIONS, default=PRECISION, help=PRECISION_HELP)


def run(args: argparse.Namespace) -> int:
    results = evaluate(args.checkpoints, args.data, args.videos.split(",") if args.videos else None,
                       tuple(c for c in args.conditions.split(",") if c), batch_size=args.batch_size,
                       smoothing_edges=args.smoothing_edges, precision=args.precision, faces=args.faces,
                       rule=args.rule, step=args.step)
    write_report(results, args.out)
    print(markdown(results))
    return 0
