"""Inference shared by ``evaluate``, ``predict`` and the demo: a trained model from its checkpoint, and per-frame
predictions of whole videos read a few windows at a time."""
from __future__ import annotations

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .data import AffWild2Dataset
from .models import MODELS, AVERConfig
from .models.precision import PRECISIONS, cpu_has_native_bf16, precision_context

BATCH_SIZE = 2  # windows per forward pass in evaluate/predict: peak memory grows with it, not with video length
__all__ = ["BATCH_SIZE", "PRECISIONS", "cpu_has_native_bf16", "load_model", "precision_context", "predict_frames"]


def load_model(prefix: str) -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint (``RUN/best``, ``RUN/last``) in eval mode, rebuilt from the architecture the
    checkpoint records (the fusion model and its full :class:`AVERConfig`), and the checkpoint's state (``config``:
    the run's :class:`~aver_fast.training.TrainConfig` as a dict, ``split``, progress)."""
    weights, state = load_checkpoint(prefix)
    try:
        fusion, config = state["arch"]
        build = MODELS[fusion]
        config = AVERConfig.from_dict(config)
        with torch.device("meta"):  # shapes only: a crafted architecture allocates nothing
            shapes = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{prefix}: the checkpoint does not describe a model of this version "
                              f"({type(e).__name__}: {e})") from None
    stored = {k: tuple(v.shape) for k, v in weights.items()}
    if stored != shapes:
        wrong = sorted(k for k in shapes.keys() & stored.keys() if shapes[k] != stored[k])
        detail = (f"{wrong[0]} is {stored[wrong[0]]} in the weights but {shapes[wrong[0]]} in the architecture"
                  if wrong else f"missing {sorted(shapes.keys() - stored.keys())[:3]}, unexpected "
                                f"{sorted(stored.keys() - shapes.keys())[:3]}")
        raise CheckpointError(f"{prefix}: its weights do not fit the architecture it records ({detail})")
    model = build(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{prefix}: its weights do not fit the model it describes: {e}") from None
    return model.eval(), state


def predict_frames(model: torch.nn.Module, ds: AffWild2Dataset, batch_size: int = BATCH_SIZE,
                   precision: str = "fp32") -> dict:
    """Per video: per-frame predictions ``(frames, 2)`` (each frame gets the prediction of the step whose
    sub-sequence ends at or after it), the labels and per-step (pred, target, mask). Windows are read and run
    ``batch_size`` at a time, so peak memory does not depend on the video's length; ``precision`` as
    :func:`precision_context`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cfg = ds.config
    entries = {e.name: e for e in ds.entries}
    out: dict = {}
    context = precision_context(model, precision)  # outside inference mode: it may convert the weights' layout
    with torch.inference_mode(), context:
        for k0 in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(k0, min(len(ds), k0 + batch_size))]
            pred = model(torch.stack([it["video"] for it in items]),
                         torch.stack([it["audio"] for it in items])).float()
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
