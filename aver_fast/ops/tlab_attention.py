"""TLAB global-local attention product (paper Eq. 4-6).

``O = A_G (A_L V)`` with ``A_G = softmax(Q Kᵀ s)`` and ``A_L = softmax(K Qᵀ s)``, softmax over the last axis,
``s = scale or D**-0.5``. Shapes: q, k, v ``(..., L, D)`` -> ``(..., L, D)``; ``mask`` ``(..., L)`` bool (True: a
real step): both softmaxes run over the real steps only, padded rows of O are 0, and padded inputs get no gradient.
"""
from __future__ import annotations

import torch

from . import _autograd, _ext, _functorch, _registry
from ._validation import (
    FLOAT_DTYPES,
    HALF_DTYPES,
    autocast_inputs,
    autocast_off,
    check_bool_mask,
    check_same,
    check_scale,
    check_tensor,
    compute_dtype,
    upcast_half,
)

OP = "tlab_attention"


def tlab_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)``; q, k, v ``(..., L, D)`` -> ``(..., L, D)``.

    Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``, ``O = attn(query=q, key=k, value=U)``.
    ``mask`` ``(..., L)`` bool, True for real steps: padded steps are left out of both softmaxes (their inputs are
    never read), padded output rows are 0. float16/bfloat16 inputs are computed in float32.
    """
    s = q.shape[-1] ** -0.5 if scale is None else scale
    qc, kc, vc = upcast_half(q, k, v)
    if mask is not None:
        real = mask[..., None]
        qc, kc, vc = (torch.where(real, t, 0.0) for t in (qc, kc, vc))  # a padded NaN cannot reach a real step
    scores = torch.matmul(qc, kc.transpose(-1, -2)) * s  # (..., L, L)
    scores_t = scores.transpose(-1, -2)
    if mask is not None:
        keep = (mask | ~mask.any(-1, keepdim=True))[..., None, :]  # no real step at all: every output row is 0
        scores, scores_t = scores.masked_fill(~keep, float("-inf")), scores_t.masked_fill(~keep, float("-inf"))
    a_g = torch.softmax(scores, dim=-1)
    a_l = torch.softmax(scores_t, dim=-1)
    out = torch.matmul(a_g, torch.matmul(a_l, vc))
    if mask is not None:
        out = torch.where(mask[..., None], out, 0.0)
    return out.to(q.dtype)


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
                   backend: str | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Global-local attention ``softmax(q kᵀ s) @ (softmax(k qᵀ s) @ v)`` (paper Eq. 4-6).

    Args:
        q, k, v: ``(..., L, D)`` floating-point tensors of the same shape, dtype and device.
        scale: ``s``; defaults to ``D**-0.5``.
        backend: force ``"reference"``, ``"cpp"``, ``"triton"`` or ``"sdpa"`` (two PyTorch attention calls; calls
            that need no gradient) (else ``$AVER_FAST_BACKEND``, else the fastest available one; see
            :func:`aver_fast.backends`).
        mask: bool ``(..., L)`` broadcastable to ``q.shape[:-1]`` (e.g. ``(B, 1, L)`` for ``(B, H, L, D)``), True
            for real steps. The real rows equal the op on the sequence without the padded steps; padded rows are
            0 and padded inputs get no gradient.

    Under ``torch.autocast`` the inputs are cast to the autocast dtype first.

    Returns:
        ``(..., L, D)``. Equals two chained attentions: ``U = attn(query=k, key=q, value=v)``,
        ``O = attn(query=q, key=k, value=U)``.
    """
    q, k, v = autocast_inputs(q, k, v)
    s = check_inputs(q, k, v, scale)
    with autocast_off(q):
        b = _registry.select(OP, q.device, q.dtype, backend, (q, k, v, s))
        if mask is None:
            return b.fn(q, k, v, s)
        mask = check_mask(mask, q)
        if b.name != "reference":
            why = b.accepts(*(_masked_like(q),) * 3, s)  # the fused kernel runs on (..., L, D + 2) in float32
            if why is None:
                return masked_by_bias(b.fn, q, k, v, s, mask)
            if _registry.requested_backend(backend) is not None:
                raise RuntimeError(f"aver_fast.tlab_attention: backend {b.name!r} was requested but cannot run this "
                                   f"masked call: {why} (a mask adds 2 to D, and half inputs run in float32)")
        return tlab_attention_ref(q, k, v, s, mask)


def _masked_like(q: torch.Tensor) -> torch.Tensor:
    """What :func:`masked_by_bias` hands the fused kernel, as an empty meta tensor (for ``accepts``)."""
    return torch.empty((*q.shape[:-1], q.shape[-1] + 2), dtype=compute_dtype(q.dtype), device="meta")


def check_mask(mask: object, q: torch.Tensor) -> torch.Tensor:
    """``mask`` as a bool ``q.shape[:-1]`` tensor, or a one-line error naming what is wrong."""
    check_bool_mask(mask, q.device, "of shape (..., L)", "q")
    try:
        return mask.expand(q.shape[:-1])
    except RuntimeError:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, which does not broadcast to q's (..., L) = "
                         f"{tuple(q.shape[:-1])}; for q (B, H, L, D) pass mask (B, 1, L)") from None


MASK_MARGIN = 1e4  # the masked scores sit this far (times s) below any real one: exp underflows to exactly 0


def masked_by_bias(fn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   mask: torch.Tensor) -> torch.Tensor:
    """A fused backend's ``fn(q, k, v, scale)`` with padded steps masked, through two score columns.

    ``q' = [q, 1, -b·pad]``, ``k' = [k, -b·pad, 1]``, ``v' = [v, 0, 0]``: ``q'_i·k'_j = q_i·k_j - b(pad_i +
    pad_j)``, exactly ``q_i·k_j`` between real steps, and ``b = 2 max|q_i·k_j| + MASK_MARGIN / s`` puts every score
    of a padded step where ``exp`` gives exactly 0 in both softmaxes. Padded inputs are zeroed first (a NaN there
    stays there) and padded output rows are 0. Half inputs are computed in float32 (the fused kernels do so
    anyway), where ``b`` is representable. Shapes: q, k, v ``(..., L, D)``, mask ``(..., L)`` -> ``(..., L, D)``.
    """
    out_dtype, dtype = q.dtype, compute_dtype(q.dtype)
    real = mask[..., None]
    q, k, v = (torch.where(real, t.to(dtype), 0.0) for t in (q, k, v))
    with torch.no_grad():  # b moves no score that a gradient could see: it is a constant
        bound = q.norm(dim=-1).amax() * k.norm(dim=-1).amax()  # >= |q_i·k_j| (Cauchy-Schwarz)
        b = (2 * bound + MASK_MARGIN / scale).clamp(max=torch.finfo(dtype).max / 8)
    pad = (~real).to(dtype) * -b
    one, zero = torch.ones_like(pad), torch.zeros_like(pad)
    out = fn(torch.cat([q, one, pad], -1), torch.cat([k, pad, one], -1), torch.cat([v, zero, zero], -1), scale)
    return torch.where(real, out[..., :-2], 0.0).to(out_dtype)



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
    :mod:`aver_fast.ops._autotune`): a call with fewer problems than threads, each ``MEASURED_WORK`` or more, runs
    with each problem's rows split over at most L/16 threads and a fork-join per phase, and may still go faster in
    the reference's matmuls on every thread; and problems of ``BLOCKED_WORK`` or more outgrow its unblocked
    products."""
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


# ------------------------------------------------------------------------------------------------ SDPA backend
def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``attn(query=q, key=k, value=attn(query=k, key=q, value=v))`` in two ``scaled_dot_product_attention`` calls:
    PyTorch's fused attention kernels (flash or memory-efficient on CUDA); U = A_L V is rounded to the input dtype
    between them."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return sdpa(q, k, sdpa(k, q, v, scale=scale), scale=scale)


def _sdpa_accepts(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> str | None:
    transformed = not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is not None
    if _functorch.needs_grad((q, k, v)) or transformed:
        return ("it runs calls that need no gradient, outside torch.func transforms, only (PyTorch's fused "
                "attention kernels have no second derivative on CUDA; the other backends do)")
    return None


def _sdpa_precision(device: torch.device, dtype: torch.dtype) -> str | None:
    if dtype in HALF_DTYPES:
        return (f"{str(dtype).removeprefix('torch.')}: each attention accumulates in float32 inside PyTorch's kernel, "
                "the intermediate A_L V is rounded to it in between")
    return None


SDPA_ON_CPU = ("on CPU the C++ kernel measured 1.2-2.8x two scaled_dot_product_attention calls at every benchmark "
               "shape, and the reference 0.85-1.35x them (benchmarks/RESULTS.md, sdpa pair)")


# ------------------------------------------------------------------------------------------------ backend table
_registry.register(OP, _registry.Backend("reference", tlab_attention_ref))
_registry.register(OP, _registry.Backend("cpp", _cpp, _ext.cpp_available, _ext.cpu_kernels,
                                         measure_when=_may_lose,
                                         precision=_ext.cpu_half_inside))
_registry.register(OP, _registry.Backend("triton", _triton, _ext.triton_available, _ext.triton_device,
                                         _triton_accepts, auto_devices=("cuda",)))
_registry.register(OP, _registry.Backend("sdpa", _sdpa, accepts=_sdpa_accepts,
                                         auto_devices=("cuda",), requested_only=SDPA_ON_CPU,
                                         precision=_sdpa_precision))
