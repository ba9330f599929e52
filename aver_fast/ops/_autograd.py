"""Second derivatives for the fused backends.

The fused backward kernels (C++ and Triton) compute first derivatives only. When a backward runs with
``create_graph=True`` (double backward: gradient penalties, ``gradgradcheck``), the op's backward instead rebuilds
the gradient from the op's pure-PyTorch reference with autograd, so the result is differentiable again and exact
(the reference is the specification). First-order backward keeps the fused kernels.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def needs_graph() -> bool:
    """True inside a backward that must itself be differentiable (``create_graph=True``)."""
    return torch.is_grad_enabled()


def reference_grads(forward: Callable[..., Sequence[torch.Tensor]], inputs: Sequence[torch.Tensor],
                    needs: Sequence[bool], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Differentiable vector-Jacobian product of ``forward(*inputs)`` (a tuple of outputs) with ``grads``.

    ``needs[i]`` says whether input ``i`` wants a gradient; outputs whose gradient is None are left out.
    """
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    if not wanted:
        return [None] * len(inputs)
    with torch.enable_grad():
        outs = forward(*inputs)
        pairs = [(o, g) for o, g in zip(outs, grads, strict=True) if g is not None]
        got = torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
                                  allow_unused=True)
    it = iter(got)
    return [next(it) if need else None for need in needs]
