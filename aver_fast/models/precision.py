"""Running a model in fp32 or bf16: the autocast context, whether this CPU has native bfloat16, and the video
backbone's faster weight layout on the CPU for the time of a prediction."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from ..cpu import has_native

PRECISIONS = ("fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX; see :mod:`aver_fast.cpu`)."""
    return has_native(torch.bfloat16)


def precision_context(model: torch.nn.Module, precision: str) -> contextlib.AbstractContextManager:
    """The context to run ``model`` in for ``precision``: ``fp32``, or ``bf16`` autocast (on CUDA; on a CPU with
    native bfloat16, else a warning and fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = next(model.parameters()).device
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where it would be "
                      "slower than fp32; running in fp32", RuntimeWarning, stacklevel=2)
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def cpu_layout(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, on the CPU, the video backbone's 5-D weights in channels-last-3d layout (the same numbers;
    faster oneDNN convolutions); the layout they had is restored after. Enter it outside ``torch.inference_mode``
    (weights re-laid there would become inference tensors)."""
    backbone = getattr(model, "video_backbone", None)
    weights = [] if backbone is None else [p for p in backbone.parameters()
                                           if p.device.type == "cpu" and p.dim() == 5 and p.is_contiguous()]
    with torch.no_grad():
        for p in weights:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    try:
        yield
    finally:
        with torch.no_grad():
            for p in weights:
                p.data = p.data.contiguous()
