"""TLAB global-local attention product (paper Eq. 4-6).

``O = A_G (A_L V)`` with ``A_G = softmax(Q Kᵀ s)`` and ``A_L = softmax(K Qᵀ s)``, softmax over the last axis,
``s = scale or D**-0.5``. Shapes: q, k, v ``(..., L, D)`` -> ``(..., L, D)``.
"""
from __future__ import annotations

import torch

from . import _ext, _registry
from ._validation import check_same, check_scale, check_tensor

OP = "tlab_attention"


def _upcast(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """float16/bfloat16 are computed in float32 (the result is cast back by the caller)."""
    if ts[0].dtype in (torch.float16, torch.bfloat16):
        return tuple(t.float() for t in ts)
    return ts


def tlab_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Reference: ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)``; q, k, v ``(..., L, D)`` -> ``(..., L, D)``.

    Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``, ``O = attn(query=q, key=k, value=U)``.
    float16/bfloat16 inputs are computed in float32.
    """
    s = q.shape[-1] ** -0.5 if scale is None else scale
    qc, kc, vc = _upcast(q, k, v)
    scores = torch.matmul(qc, kc.transpose(-1, -2)) * s  # (..., L, L)
    a_g = torch.softmax(scores, dim=-1)
    a_l = torch.softmax(scores.transpose(-1, -2), dim=-1)
    return torch.matmul(a_g, torch.matmul(a_l, vc)).to(q.dtype)


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> float:
    """Validate q, k, v and return the effective scale."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, min_dim=2)
    check_same(("q", "k", "v"), (q, k, v))
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but q has shape {tuple(q.shape)}; "
                             "q, k and v must all be (..., L, D) with the same shape")
    if q.shape[-1] == 0 or q.shape[-2] == 0:
        raise ValueError(f"q must have non-empty L and D, got shape {tuple(q.shape)}")
    return check_scale(scale, q.shape[-1] ** -0.5)


def _compiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Launch ``torch.ops.aver_fast.tlab_attention`` on ``(N, L, D)`` views (the dispatcher picks CPU or CUDA)."""
    L, D = q.shape[-2:]
    out = torch.ops.aver_fast.tlab_attention(q.reshape(-1, L, D), k.reshape(-1, L, D), v.reshape(-1, L, D), scale)
    return out.reshape(q.shape)


_registry.register(OP, _registry.Backend("reference", tlab_attention_ref))
_registry.register(OP, _registry.Backend("cpp", _compiled, _ext.cpp_available, _ext.cpu_float32_64))

if _ext.LOADED:
    @torch.library.register_fake("aver_fast::tlab_attention")
    def _fake(q, k, v, scale):
        return q.new_empty(q.shape)

    @torch.library.register_fake("aver_fast::tlab_attention_backward")
    def _fake_backward(grad, q, k, v, scale):
        return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)

    def _setup_context(ctx, inputs, output):
        q, k, v, scale = inputs
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale

    def _backward(ctx, grad):
        q, k, v = ctx.saved_tensors
        dq, dk, dv = torch.ops.aver_fast.tlab_attention_backward(grad, q, k, v, ctx.scale)
        return dq, dk, dv, None

    torch.library.register_autograd("aver_fast::tlab_attention", _backward, setup_context=_setup_context)


def tlab_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                   backend: str | None = None) -> torch.Tensor:
    """Global-local attention ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)`` (paper Eq. 4-6).

    Args:
        q, k, v: ``(..., L, D)`` floating-point tensors of the same shape, dtype and device.
        scale: ``s``; defaults to ``D**-0.5``.
        backend: force ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"`` (else ``$AVER_FAST_BACKEND``, else
            the fastest available one; see :func:`aver_fast.backends`).

    Returns:
        ``(..., L, D)``. Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``,
        ``O = attn(query=q, key=k, value=U)``.
    """
    s = check_inputs(q, k, v, scale)
    b = _registry.select(OP, q.device, q.dtype, backend)
    return b.fn(q, k, v, s)
