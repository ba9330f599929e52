"""``aver-fast evaluate``: CCC of valence/arousal per condition for one or more checkpoints, raw and with the
public code's post-processing; a markdown table and JSON."""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..data import AffWild2Dataset, parse_condition
from ..inference import BATCH_SIZE, load_model, predict_frames
from ..metrics import INVALID_LABEL, va_ccc

HELP = "CCC per condition for one or more checkpoints (markdown + JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="checkpoint prefixes, e.g. runs/aver/best runs/jca/best")
    p.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder")
    p.add_argument("--conditions", default="clean", help="comma-separated conditions (presets or specs)")
    p.add_argument("--videos", help="comma-separated videos (default: each checkpoint's test split)")
    p.add_argument("--out", default="evaluation", help="folder for evaluation.md and evaluation.json")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")


def moving_average(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centred moving average along the last axis, reflecting at the ends (scipy's uniform_filter1d)."""
    if size <= 1 or x.shape[-1] < 2:
        return x
    left, right = size // 2, size - 1 - size // 2
    mode = "reflect" if x.shape[-1] > max(left, right) else "replicate"
    return F.avg_pool1d(F.pad(x.reshape(1, 1, -1), (left, right), mode=mode), size, stride=1).reshape(-1)


def score(preds: dict, post: bool) -> dict:
    """CCC over every valid frame of every video (one global CCC, as the public code), optionally after clipping to
    [-1, 1] and a per-video moving average of 20 (valence) / 50 (arousal) frames."""
    ps, ts = [], []
    for rec in preds.values():
        p = rec["frames"].clone()
        if post:
            p = p.clamp(-1, 1)
            p = torch.stack([moving_average(p[:, 0], 20), moving_average(p[:, 1], 50)], dim=1)
        valid = (rec["labels"] != INVALID_LABEL).all(dim=1) & torch.isfinite(p).all(dim=1)
        ps.append(p[valid])
        ts.append(rec["labels"][valid])
    return va_ccc(torch.cat(ps), torch.cat(ts))


def evaluate(checkpoints: list[str], data: str, videos: list[str] | None = None,
             conditions: tuple[str, ...] = ("clean",), seed: int = 0, batch_size: int = BATCH_SIZE,
             log=print) -> dict:
    """``{checkpoint: {condition: {"raw": {...}, "post": {...}, "params": [...]}}}`` on the checkpoints' test
    split (or ``videos``)."""
    results: dict = {}
    for prefix in checkpoints:
        model, state = load_model(prefix)
        cfg = TrainConfig(**state["config"])
        names = videos or state["split"]["test"]
        if not names:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in state["split"].items())
            raise ValueError(f"{prefix}: its test split is empty (videos per split: {sizes}); choose videos with "
                             "--videos")
        results[prefix] = {}
        for cond in conditions:
            condition = parse_condition(cond)
            ds = AffWild2Dataset(data, names, cfg.alignment(), condition=condition, seed=seed)
            preds = predict_frames(model, ds, batch_size)
            results[prefix][cond] = {"raw": score(preds, False), "post": score(preds, True),
                                     "params": condition.params}
            r = results[prefix][cond]
            log(f"{prefix} [{cond}] CCC raw {r['raw']['mean']:.3f}, post-processed {r['post']['mean']:.3f}")
    return results


def markdown(results: dict) -> str:
    rows = ["| checkpoint | condition | valence | arousal | mean | valence (post) | arousal (post) | mean (post) |",
            "|---|---|---|---|---|---|---|---|"]
    for prefix, per in results.items():
        for cond, r in per.items():
            rows.append(f"| {prefix} | {cond} | " + " | ".join(f"{r[k][m]:.3f}" for k in ("raw", "post")
                                                             for m in ("valence", "arousal", "mean")) + " |")
    return "\n".join(rows) + "\n"


def write_report(results: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "evaluation.md"), "w") as f:
        f.write(markdown(results))


def run(args: argparse.Namespace) -> int:
    results = evaluate(args.checkpoints, args.data, args.videos.split(",") if args.videos else None,
                       tuple(c for c in args.conditions.split(",") if c), batch_size=args.batch_size)
    write_report(results, args.out)
    print(markdown(results))
    return 0
