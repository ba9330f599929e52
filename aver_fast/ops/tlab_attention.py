"""TLAB global-local attention product (paper Eq. 4-6).

``O = A_G (A_L V)`` with ``A_G = softmax(Q Kᵀ s)`` and ``A_L = softmax(K Qᵀ s)``, softmax over the last axis,
``s = scale or D**-0.5``. Shapes: q, k, v ``(..., L, D)`` -> ``(..., L, D)``.
"""
from __future__ import annotations

import torch

from . import _autograd, _ext, _functorch, _registry
from ._validation import (
    FLOAT_DTYPES,
    autocast_inputs,
    autocast_off,
    check_same,
    check_scale,
    check_tensor,
    upcast_half,
)

OP = "tlab_attention"


def tlab_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Reference: ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)``; q, k, v ``(..., L, D)`` -> ``(..., L, D)``.

    Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``, ``O = attn(query=q, key=k, value=U)``.
    float16/bfloat16 inputs are computed in float32.
    """
    s = q.shape[-1] ** -0.5 if scale is None else scale
    qc, kc, vc = upcast_half(q, k, v)
    scores = torch.matmul(qc, kc.transpose(-1, -2)) * s  # (..., L, L)
    a_g = torch.softmax(scores, dim=-1)
    a_l = torch.softmax(scores.transpose(-1, -2), dim=-1)
    return torch.matmul(a_g, torch.matmul(a_l, vc)).to(q.dtype)


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> float:
    """Validate q, k, v and return the effective scale."""
    if (isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)
            and q.dtype in FLOAT_DTYPES and q.dtype == k.dtype == v.dtype and q.shape == k.shape == v.shape
            and q.device == k.device == v.device and q.dim() >= 2 and q.shape[-1] and q.shape[-2]
            and scale is None):  # the common call, checked at once; anything else gets the detailed checks
        return q.shape[-1] ** -0.5
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


def tlab_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                   backend: str | None = None) -> torch.Tensor:
    """Global-local attention ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)`` (paper Eq. 4-6).

    Args:
        q, k, v: ``(..., L, D)`` floating-point tensors of the same shape, dtype and device.
        scale: ``s``; defaults to ``D**-0.5``.
        backend: force ``"reference"``, ``"cpp"`` or ``"triton"`` (else ``$AVER_FAST_BACKEND``, else
            the fastest available one; see :func:`aver_fast.backends`).

    Under ``torch.autocast`` the inputs are cast to the autocast dtype first.

    Returns:
        ``(..., L, D)``. Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``,
        ``O = attn(query=q, key=k, value=U)``.
    """
    q, k, v = autocast_inputs(q, k, v)
    s = check_inputs(q, k, v, scale)
    with autocast_off(q):
        return _registry.select(OP, q.device, q.dtype, backend, (q, k, v, s)).fn(q, k, v, s)



# ------------------------------------------------------------------------------------------------ C++ backend
def _cpp(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Launch ``csrc/cpu/tlab_attention.cpp`` on any ``(..., L, D)``: ``aver_fast::tlab_attention`` when no
    gradient is wanted (nothing of size L x L is allocated), else ``aver_fast::tlab_attention_train``, which keeps
    A_G, A_Lᵀ ``(..., L, L)`` and one intermediate for a backward that recomputes nothing (the reference's autograd
    keeps as much). float16/bfloat16 are computed in float32 inside the kernel."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _CPP_TRAIN(q, k, v, scale)[0]
    return _CPP(q, k, v, scale)


def _reference(q, k, v, scale):
    return (tlab_attention_ref(q, k, v, scale),)


MEASURED_WORK = 1 << 18  # multiply-adds of one problem (L²D) from which a lone problem may go faster on every thread
BLOCKED_WORK = 1 << 23   # ... from which the BLAS's cache blocking may beat the kernel's L1/L2-resident products


def _may_lose(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> bool:
    """Where the C++ kernel may be slower than the reference, so the call is measured (see
    :mod:`aver_fast.ops._autotune`): it runs each (batch, head) problem on one thread, so fewer problems than threads,
    each ``MEASURED_WORK`` or more, may go faster in the reference's matmuls on every thread; and problems of
    ``BLOCKED_WORK`` or more outgrow its unblocked products."""
    L, D = q.shape[-2:]
    work = L * L * D
    return work >= BLOCKED_WORK or (work >= MEASURED_WORK and q.numel() // (L * D) < torch.get_num_threads())


def _train_outputs(q: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Empty (O, A_G, A_Lᵀ, mid) of ``aver_fast::tlab_attention_train`` for inputs like ``q`` (fake tensors); the
    kept three in the compute dtype (float64, else float32)."""
    L, D = q.shape[-2:]
    mid = L if L < D else D  # csrc/cpu/isa.h, tlab_mid_cols
    kept = torch.float64 if q.dtype == torch.float64 else torch.float32
    return q.new_empty(q.shape), q.new_empty((*q.shape[:-1], L), dtype=kept), \
        q.new_empty((*q.shape[:-1], L), dtype=kept), q.new_empty((*q.shape[:-1], mid), dtype=kept)


if _ext.LOADED:
    @torch.library.register_fake("aver_fast::tlab_attention")
    def _fake(q, k, v, scale):
        return q.new_empty(q.shape)

    @torch.library.register_fake("aver_fast::tlab_attention_train")
    def _fake_train(q, k, v, scale):
        return _train_outputs(q)

    @torch.library.register_fake("aver_fast::tlab_attention_backward")
    def _fake_backward(grad, q, k, v, a_g, p, mid, scale):
        return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)

    def _backward_recomputing(grads, qkv, _, scale):  # a direct call of the inference op, then backward
        _, a_g, p, mid = torch.ops.aver_fast.tlab_attention_train(*qkv, scale)
        return torch.ops.aver_fast.tlab_attention_backward(grads[0], *qkv, a_g, p, mid, scale)

    _CPP = _autograd.register("aver_fast::tlab_attention", _reference, _backward_recomputing, save_outputs=False)
    _CPP_TRAIN = _autograd.register("aver_fast::tlab_attention_train", _reference,  # A_G, A_Lᵀ, mid feed the kernel
                                    lambda grads, qkv, saved, scale: torch.ops.aver_fast.tlab_attention_backward(
                                        grads[0], *qkv, *saved, scale), save_outputs=slice(1, None))
    _B = _functorch.BATCHED  # every tensor of the C++ ops is (..., L, *): the vmapped dim is one more batch dim
    _functorch.register_vmap("aver_fast::tlab_attention", (_B, _B, _B, None))
    _functorch.register_vmap("aver_fast::tlab_attention_train", (_B, _B, _B, None))
    _functorch.register_vmap("aver_fast::tlab_attention_backward", (_B,) * 7 + (None,))


# ------------------------------------------------------------------------------------------------ Triton backend
@torch.library.custom_op("aver_fast::tlab_attention_triton", mutates_args=())
def _triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(O, U, lse_u, lse_o) from ``aver_fast.kernels.tlab_attention`` on ``(N, L, D)`` inputs."""
    from ..kernels import tlab_attention as kernel
    return kernel.forward(q.contiguous(), k.contiguous(), v.contiguous(), scale)


@_triton_forward.register_fake
def _(q, k, v, scale):
    from ..kernels import tlab_attention as kernel
    n, L, D = q.shape
    if kernel.use_short_path(L, q.dtype):
        return q.new_empty(q.shape), q.new_empty(0), q.new_empty(0, dtype=torch.float32), \
            q.new_empty(0, dtype=torch.float32)
    return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty((n, L), dtype=torch.float32), \
        q.new_empty((n, L), dtype=torch.float32)


@torch.library.custom_op("aver_fast::tlab_attention_triton_backward", mutates_args=())
def _triton_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                     u: torch.Tensor, lse_u: torch.Tensor, lse_o: torch.Tensor,
                     scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..kernels import tlab_attention as kernel
    return kernel.backward(grad, q.contiguous(), k.contiguous(), v.contiguous(), out, u, lse_u, lse_o, scale)


@_triton_backward.register_fake
def _(grad, q, k, v, out, u, lse_u, lse_o, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


_TRITON = _autograd.register(_triton_forward, _reference,  # the saved (O, U, lse_u, lse_o) feed the backward kernel
                             lambda grads, qkv, saved, scale: torch.ops.aver_fast.tlab_attention_triton_backward(
                                 grads[0], *qkv, *saved, scale))
_functorch.register_vmap("aver_fast::tlab_attention_triton", (_functorch.BATCHED,) * 3 + (None,), fold=True)
_functorch.register_vmap("aver_fast::tlab_attention_triton_backward", (_functorch.BATCHED,) * 8 + (None,), fold=True)


def _triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    L, D = q.shape[-2:]
    out = _TRITON(q.reshape(-1, L, D), k.reshape(-1, L, D), v.reshape(-1, L, D), scale)[0]
    return out.reshape(q.shape)


def _triton_accepts(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> str | None:
    from ..kernels.tlab_attention import LONG_MAX_D, use_short_path  # lazily: importing it imports triton

    L, D = q.shape[-2:]
    if not use_short_path(L, q.dtype) and D > LONG_MAX_D:
        return f"the long-sequence Triton path keeps a row of D <= {LONG_MAX_D} on chip (got L={L}, D={D})"
    return None


# ------------------------------------------------------------------------------------------------ backend table
_registry.register(OP, _registry.Backend("reference", tlab_attention_ref))
_registry.register(OP, _registry.Backend("cpp", _cpp, _ext.cpp_available, _ext.cpu_kernels,
                                         measure_when=_may_lose,
                                         precision=_ext.cpu_half_inside))
_registry.register(OP, _registry.Backend("triton", _triton, _ext.triton_available, _ext.triton_device,
                                         _triton_accepts, auto_devices=("cuda",)))
