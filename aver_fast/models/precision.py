"""Running a model in fp32, bf16 or int8: which one ``auto`` picks, the autocast context, whether this CPU has
native bfloat16, and the video backbone's faster weight layout on the CPU for the time of a prediction."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from ..cpu import has_native

PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISION = "auto"  # the default of predict and evaluate
PRECISION_HELP = ("auto (default): int8 for a checkpoint written by 'aver-fast quantize', else bf16 autocast on a CPU "
                  "with AVX512-BF16 or AMX, else fp32 (on a GPU too: measured faster there); bf16 on a CPU without "
                  "them: a warning and fp32; int8: a quantized checkpoint's int8 backbones (fp32: its fp32 weights)")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX; see :mod:`aver_fast.cpu`)."""
    return has_native(torch.bfloat16)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device, quantized: bool) -> str:
    """What ``precision`` runs as for a model on ``device`` from a checkpoint that is (or not) ``quantized``:
    ``auto`` is int8 for a quantized checkpoint, else bf16 on a CPU with native bfloat16 (AVX512-BF16 or AMX), else
    fp32; ``bf16`` on a CPU without native bfloat16 warns and is fp32 (slower otherwise); ``int8`` needs a quantized
    checkpoint.

    On CUDA ``auto`` is fp32 (with PyTorch's default TF32 convolutions): at the batch sizes ``predict`` runs (1-8
    windows) AVER is bound by kernel launches there, and bf16 autocast adds cast kernels to each call; measured on an
    H200, bf16 took 1.4-2.4x fp32's time per instance at batch 1 (benchmarks/RESULTS.md, "GPU")."""
    check_precision(precision)
    native_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    if precision == "auto":
        return "int8" if quantized else "bf16" if device.type == "cpu" and native_bf16 else "fp32"
    if precision == "int8" and not quantized:
        raise ValueError("precision int8 needs a quantized checkpoint: make one with 'aver-fast quantize'")
    if precision == "bf16" and not native_bf16:
        warnings.warn("precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), where it would be "
                      "slower than fp32; running in fp32", RuntimeWarning, stacklevel=2)
        return "fp32"
    return precision


def runs_int8(model: torch.nn.Module) -> bool:
    """Whether ``model``'s backbones are an int8 engine's (a quantized checkpoint loaded in int8)."""
    return any(getattr(m, "int8", False) for m in model.modules())


def precision_context(model: torch.nn.Module, precision: str) -> contextlib.AbstractContextManager:
    """The context to run ``model`` in for ``precision`` (:func:`resolve_precision`): none for ``fp32`` and
    ``int8`` (an engine runs the int8 backbones; the rest is fp32), else ``bf16`` autocast."""
    device = next(model.parameters()).device
    resolved = resolve_precision(precision, device, runs_int8(model))
    if runs_int8(model) != (resolved == "int8"):
        raise ValueError(f"precision {precision}: the model's backbones are "
                         f"{'int8; load the checkpoint in that precision' if runs_int8(model) else 'not int8'}")
    if resolved in ("fp32", "int8"):
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
