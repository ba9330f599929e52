"""``aver-fast evaluate``: CCC of valence/arousal per condition for one or more checkpoints, raw and with the
public code's post-processing; a markdown table and JSON."""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .data import AffWild2Dataset, parse_condition
from .metrics import INVALID_LABEL, va_ccc
from .models import MODELS
from .train import TrainConfig


def load_model(prefix: str) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """A model, its training config and the checkpoint state from a prefix (``RUN/best`` or ``RUN/last``)."""
    weights, state = load_checkpoint(prefix)
    cfg = TrainConfig(**state["config"])
    model = MODELS[cfg.fusion](cfg.model_config())
    model.load_state_dict(weights)
    return model.eval(), cfg, state


def moving_average(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centred moving average along the last axis, reflecting at the ends (scipy's uniform_filter1d)."""
    if size <= 1 or x.shape[-1] < 2:
        return x
    left, right = size // 2, size - 1 - size // 2
    mode = "reflect" if x.shape[-1] > max(left, right) else "replicate"
    return F.avg_pool1d(F.pad(x.reshape(1, 1, -1), (left, right), mode=mode), size, stride=1).reshape(-1)


BATCH_SIZE = 2  # windows per forward pass in evaluate/predict: peak memory grows with it, not with video length


def predict_frames(model: torch.nn.Module, ds: AffWild2Dataset, batch_size: int = BATCH_SIZE) -> dict:
    """Per video: per-frame predictions ``(frames, 2)`` (each frame gets the prediction of the step whose
    sub-sequence ends at or after it), the labels and per-step (pred, target, mask). Windows are read and run
    ``batch_size`` at a time, so peak memory does not depend on the video's length."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = ds.config
    entries = {e.name: e for e in ds.entries}
    out: dict = {}
    with torch.no_grad():
        for k0 in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(k0, min(len(ds), k0 + batch_size))]
            pred = model(torch.stack([it["video"] for it in items]), torch.stack([it["audio"] for it in items]))
            for it, p in zip(items, pred, strict=True):
                e = entries[it["video_name"]]
                rec = out.setdefault(e.name, {"frames": torch.full((e.frames, 2), float("nan")),
                                              "labels": torch.from_numpy(e.labels), "steps": []})
                for s in range(cfg.steps):
                    lo = it["start"] + s * cfg.subseq
                    hi = min(e.frames, lo + cfg.subseq)
                    if lo < hi:
                        rec["frames"][lo:hi] = p[s]
                rec["steps"].append((p, it["target"], it["mask"]))
    return out


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
        model, cfg, state = load_model(prefix)
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
