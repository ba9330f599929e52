"""Evaluation of checkpoints (``aver-fast evaluate``): CCC of valence/arousal per noise condition, raw and with the
public code's post-processing (clip, per-video moving average), as a markdown table and JSON."""
from __future__ import annotations

import json
import os

import torch

from .data import AffWild2Dataset, parse_condition
from .inference import load_model
from .metrics import INVALID_LABEL, va_ccc
from .models.precision import PRECISION
from .streaming import BATCH_SIZE, RULE, check_rule, output_stride, predict_frames
from .training import TrainConfig

SMOOTHING_EDGES = ("constant", "reflect", "mirror", "nearest", "wrap")  # scipy.ndimage's names
PUBLIC_SMOOTHING_EDGES = "constant"  # the public evaluation (uniform_filter1d mode="constant"): zeros past the ends


def _edge_index(i: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Where position ``i`` (possibly outside ``[0, n)``) reads from, for scipy.ndimage's boundary ``mode``."""
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i % n
    if mode == "mirror":  # d c b | a b c d | c b a
        if n == 1:
            return torch.zeros_like(i)
        j = i % (2 * n - 2)
        return torch.where(j >= n, 2 * n - 2 - j, j)
    j = i % (2 * n)  # reflect: b a | a b c d | d c
    return torch.where(j >= n, 2 * n - 1 - j, j)


def check_edges(edges: str) -> None:
    if edges not in SMOOTHING_EDGES:
        raise ValueError(f"smoothing edges must be one of {SMOOTHING_EDGES}, got {edges!r}")


def moving_average(x: torch.Tensor, size: int, edges: str = PUBLIC_SMOOTHING_EDGES) -> torch.Tensor:
    """Centred moving average of a 1-D series, ``scipy.ndimage.uniform_filter1d(x, size, mode=edges)``: the window
    of sample ``i`` is ``[i - size // 2, i + (size - 1) // 2]``; past the ends ``edges`` decides (``constant``:
    zeros, as the public evaluation; ``reflect``, ``mirror``, ``nearest``, ``wrap`` as scipy)."""
    check_edges(edges)
    n = x.shape[-1]
    if size <= 1 or n == 0:
        return x
    left = size // 2
    if edges == "constant":
        padded = torch.nn.functional.pad(x, (left, size - 1 - left))
    else:
        padded = x[_edge_index(torch.arange(-left, n + size - 1 - left, device=x.device), n, edges)]
    return padded.unfold(0, size, 1).mean(-1)


def score(preds: dict, post: bool, edges: str = PUBLIC_SMOOTHING_EDGES) -> dict:
    """CCC over every valid frame of every video (one global CCC, as the public code), optionally after clipping to
    [-1, 1] and a per-video moving average of 20 (valence) / 50 (arousal) frames with ``edges`` at the ends."""
    ps, ts = [], []
    for rec in preds.values():
        p = rec["frames"].clone()
        if post:
            p = p.clamp(-1, 1)
            p = torch.stack([moving_average(p[:, 0], 20, edges), moving_average(p[:, 1], 50, edges)], dim=1)
        valid = (rec["labels"] != INVALID_LABEL).all(dim=1) & torch.isfinite(p).all(dim=1)
        ps.append(p[valid])
        ts.append(rec["labels"][valid])
    return va_ccc(torch.cat(ps), torch.cat(ts))


def evaluate(checkpoints: list[str], data: str, videos: list[str] | None = None,
             conditions: tuple[str, ...] = ("clean",), seed: int = 0, batch_size: int = BATCH_SIZE,
             smoothing_edges: str = PUBLIC_SMOOTHING_EDGES, precision: str = PRECISION, faces: str | None = None,
             rule: str = RULE, step: int | None = None, log=print) -> dict:
    """``{checkpoint: {condition: {"raw": {...}, "post": {...}, "smoothing_edges": ..., "params": [...]}}}`` on the
    checkpoints' test split (or ``videos``)."""
    check_edges(smoothing_edges)  # an unknown mode or a bad condition fails before any work
    if not conditions:
        raise ValueError("no conditions to evaluate (--conditions is empty); e.g. --conditions clean,babble-5db")
    parsed = {cond: parse_condition(cond) for cond in conditions}
    results: dict = {}
    for prefix in checkpoints:
        model, state = load_model(prefix, precision)
        cfg = TrainConfig.from_dict(state["config"], f"{prefix} config")
        names = videos or state["split"]["test"]
        if not names:
            sizes = ", ".join(f"{k} {len(v)}" for k, v in state["split"].items())
            raise ValueError(f"{prefix}: its test split is empty (videos per split: {sizes}); choose videos with "
                             "--videos")
        results[prefix] = {}
        align = cfg.alignment()
        stride = output_stride(rule, align, check_rule(rule, step, align))  # a bad rule or step fails before work
        for cond in conditions:
            condition = parsed[cond]
            ds = AffWild2Dataset(data, names, cfg.alignment(stride), condition=condition, seed=seed,
                                 faces=faces or cfg.faces)
            preds = predict_frames(model, ds, batch_size, state["precision"], rule, step)
            results[prefix][cond] = {"raw": score(preds, False), "post": score(preds, True, smoothing_edges),
                                     "smoothing_edges": smoothing_edges, "params": condition.params,
                                     "precision": state["precision"]}
            r = results[prefix][cond]
            log(f"{prefix} [{cond}] CCC raw {r['raw']['mean']:.3f}, post-processed {r['post']['mean']:.3f}")
    return results


def markdown(results: dict) -> str:
    rows = ["| checkpoint | precision | condition | valence | arousal | mean | valence (post) | arousal (post) | "
            "mean (post) |", "|---|---|---|---|---|---|---|---|---|"]
    for prefix, per in results.items():
        for cond, r in per.items():
            scores = " | ".join(f"{r[k][m]:.3f}" for k in ("raw", "post") for m in ("valence", "arousal", "mean"))
            rows.append(f"| {prefix} | {r.get('precision', 'fp32')} | {cond} | {scores} |")
    edges = sorted({r.get("smoothing_edges", PUBLIC_SMOOTHING_EDGES) for per in results.values() for r in per.values()})
    rows += ["", f"post: clipped to [-1, 1], then a moving average of 20 (valence) / 50 (arousal) frames per video "
                 f"with {'/'.join(repr(e) for e in edges)} edges (scipy.ndimage.uniform_filter1d's mode; the public "
                 f"evaluation uses 'constant')."]
    return "\n".join(rows) + "\n"


def write_report(results: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "evaluation.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "evaluation.md"), "w") as f:
        f.write(markdown(results))
