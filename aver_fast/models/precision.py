"""Running a model in fp32 or bf16: the autocast context, and whether this CPU has native bfloat16."""
from __future__ import annotations

import contextlib
import functools
import sys
import warnings

import torch

PRECISIONS = ("fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX; read from /proc/cpuinfo on Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_context(model: torch.nn.Module, precision: str) -> contextlib.AbstractContextManager:
    """The context to run ``model`` in for ``precision``: ``fp32``, or ``bf16`` autocast (on CUDA; on a CPU with
    native bfloat16, else a warning and fp32). On the CPU the video backbone's weights are also put in
    channels-last 3-D memory format (the same numbers, faster convolutions with oneDNN)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = next(model.parameters()).device
    backbone = getattr(model, "video_backbone", None)
    if device.type == "cpu" and backbone is not None:
        backbone.to(memory_format=torch.channels_last_3d)
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where it would be "
                      "slower than fp32; running in fp32", RuntimeWarning, stacklevel=2)
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
