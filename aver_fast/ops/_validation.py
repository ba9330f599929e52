"""Input checks shared by every op (and therefore by every backend).

Each op validates its arguments once, in Python, before any backend runs, so a user sees one clear
message naming the offending argument whatever backend would have been picked.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)  # computed in float32 by the references
FLOAT_DTYPES = (*HALF_DTYPES, torch.float32, torch.float64)


def check_tensor(name: str, t: object, min_dim: int = 1) -> torch.Tensor:
    """``t`` is a floating-point tensor with at least ``min_dim`` dimensions."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(t.shape)}")
    return t


def check_same(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    """All tensors share dtype and device."""
    first_name, first = names[0], tensors[0]
    for name, t in zip(names[1:], tensors[1:], strict=True):
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}; they must match")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}; they must match")


def check_scale(scale: float | None, default: float) -> float:
    """Return the softmax/correlation scale: ``scale`` if given (finite, > 0), else ``default``."""
    if scale is None:
        return default
    scale = float(scale)
    if not (scale > 0.0 and scale < float("inf")):
        raise ValueError(f"scale must be a finite positive number, got {scale}")
    return scale


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the ops compute a ``dtype`` input in: float32 for float16/bfloat16, else ``dtype`` itself."""
    return torch.float32 if dtype in HALF_DTYPES else dtype


def check_bool_mask(mask: object, device: torch.device, shape: str, name: str) -> torch.Tensor:
    """``mask`` is a bool tensor on ``device`` (``shape`` and ``name`` word the messages); returns it."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool torch.Tensor {shape}, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = a real step), got dtype {mask.dtype}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but {name} is on {device}; they must match")
    return mask


def upcast_half(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """float16/bfloat16 tensors as float32 (the references compute in float32 and cast the result back)."""
    if ts[0].dtype in HALF_DTYPES:
        return tuple(t.float() for t in ts)
    return ts


def _autocast_on(t: object) -> bool:
    if not torch._C._is_any_autocast_enabled():  # the common case, decided without looking at the device
        return False
    if not isinstance(t, torch.Tensor) or t.device.type not in ("cpu", "cuda", "xpu", "mps"):
        return False
    return torch.is_autocast_enabled(t.device.type)


def autocast_inputs(*ts: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
    """The ops' autocast rule. Inside ``torch.autocast`` for the first tensor's device, every floating tensor is
    cast to the autocast dtype (or to ``dtype`` for an op that must run in it, e.g. float32 for log_mel), so a bf16
    activation meets a float32 weight as it would in a matmul; outside autocast the inputs are unchanged and mixed
    dtypes fail the op's checks."""
    if not _autocast_on(ts[0]):
        return ts
    to = dtype or torch.get_autocast_dtype(ts[0].device.type)
    return tuple(t.to(to) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in ts)


def autocast_off(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``t``'s device while a backend runs: after :func:`autocast_inputs` every backend
    computes exactly as for inputs of that dtype (the references' matmuls are not re-cast)."""
    return torch.autocast(t.device.type, enabled=False) if _autocast_on(t) else _NO_CONTEXT


_NO_CONTEXT = contextlib.nullcontext()  # stateless: one for every call
