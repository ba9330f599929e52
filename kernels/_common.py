"""Launch helpers shared by the Triton kernels: block sizes, dtypes, and the dot precision."""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


def block(n: int, lo: int = 16, hi: int = 128) -> int:
    """Power-of-two block covering ``n`` (at least ``lo``: tl.dot needs 16), capped at ``hi``."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def dot_mode(dtype: torch.dtype) -> int:
    """How :func:`dot` multiplies: 0 tensor cores (float16/bfloat16), 1 IEEE float32 (no TF32, for float32 inputs),
    2 bfloat16 upcast to float32 first: only under TRITON_INTERPRET, whose tl.dot mis-reads bfloat16 bits
    (triton 3.8), so that the interpreter tests check everything else of the bfloat16 path."""
    if dtype == torch.float32:
        return 1
    if dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1":
        return 2
    return 0


@triton.jit
def dot(a, b, DOT: tl.constexpr):
    """``a @ b`` with float32 accumulation, in the precision mode chosen by :func:`dot_mode`."""
    if DOT == 1:
        return tl.dot(a, b, input_precision="ieee")
    if DOT == 2:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def tanh(x):
    """tanh in float32: a Taylor polynomial near 0 (no cancellation), 1 - 2 / (exp(2|x|) + 1) elsewhere."""
    ax = tl.abs(x)
    x2 = x * x
    small = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))))
    big = 1.0 - 2.0 / (tl.exp(2.0 * ax) + 1.0)
    return tl.where(ax < 0.125, small, tl.where(x < 0, -big, big))
