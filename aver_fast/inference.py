"""A trained model from its checkpoint, validated before any allocation (``evaluate``, ``predict``, ``export``)."""
from __future__ import annotations

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .int8 import attach, check_info
from .models import MODELS, AVERConfig
from .models.base import BACKBONES
from .models.precision import resolve_precision


def load_model(prefix: str, precision: str = "fp32") -> tuple[torch.nn.Module, dict]:
    """The model of a checkpoint (``RUN/best``, ``RUN/last``) in eval mode, rebuilt from the architecture the
    checkpoint records (the fusion model and its full :class:`AVERConfig`), and the checkpoint's state (``config``:
    the run's :class:`~aver_fast.training.TrainConfig` as a dict, ``split``, progress; ``precision``: what
    ``precision`` resolved to, :func:`~aver_fast.models.precision.resolve_precision`). In int8 the backbones are
    the quantized checkpoint's engine models (:mod:`aver_fast.int8`)."""
    weights, state = load_checkpoint(prefix)
    if "int8" in state:
        check_info(state["int8"], prefix, BACKBONES)
    state["precision"] = resolve_precision(precision, torch.device("cpu"), "int8" in state)
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
    if state["precision"] == "int8":
        attach(model, prefix, state["int8"])
    return model.eval(), state
