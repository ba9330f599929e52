"""Shared parity helpers: every fast backend is compared with the float64 reference.

Tolerance (flash-attention's rule): a backend's error against the float64 reference may be at most
``factor`` × the error of the *reference itself* run in the same dtype, plus a floor ``atol`` for outputs whose
same-dtype reference error is ~0. float64 uses fixed tight bounds.
"""
from __future__ import annotations

import torch

from aver_fast.ops import _ext

DTYPES = [torch.float32, torch.float64]
ATOL64 = 1e-10  # float64: fixed bound, relative to the output's magnitude
ATOL32 = 1e-5   # float32: floor (~100 ulp of the magnitude) added to 2x the same-dtype reference error
# float16/bfloat16 (Triton): products take operands rounded to the input dtype (probabilities included) and
# accumulate in float32; a few roundings of eps = 2^-11 / 2^-8 relative to the output's magnitude.
LOWP = {torch.float16: 5e-3, torch.bfloat16: 4e-2}


def require_cpp() -> None:
    """The C++ extension is part of the build: a missing one is a failure, never a skip."""
    assert _ext.LOADED, _ext.REASON


def cpu_isas() -> list[str]:
    """Instruction sets the C++ kernels can use on this CPU."""
    require_cpp()
    current = _ext.cpu_isa()
    out = []
    for name in ("default", "avx2", "avx512"):
        try:
            _ext.set_cpu_isa(name)
            out.append(name)
        except (RuntimeError, ValueError):  # the op raises ValueError for an ISA this CPU lacks
            pass
    _ext.set_cpu_isa(current)
    return out


def assert_parity(name: str, fast: torch.Tensor, ref64: torch.Tensor, ref_same: torch.Tensor,
                  factor: float = 2.0, atol: float = ATOL32) -> None:
    """``fast`` (any dtype) vs the float64 reference ``ref64``; ``ref_same`` is the reference in fast's dtype."""
    assert fast.shape == ref64.shape, f"{name}: shape {tuple(fast.shape)} != {tuple(ref64.shape)}"
    assert torch.isfinite(fast).all(), f"{name}: non-finite values"
    err = (fast.double() - ref64).abs().max().item()
    if fast.dtype == torch.float64:
        bound = ATOL64 * max(1.0, ref64.abs().max().item())
    elif fast.dtype in LOWP:
        bound = LOWP[fast.dtype] * max(1.0, ref64.abs().max().item())
    else:
        bound = factor * (ref_same.double() - ref64).abs().max().item() + atol * max(1.0, ref64.abs().max().item())
    assert err <= bound, f"{name}: max error {err:.3e} > bound {bound:.3e} ({fast.dtype})"
