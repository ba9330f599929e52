"""JCA joint correlation matrix (paper Eq. 9, batch-first).

``C = tanh((x @ w) @ jᵀ · s)``, ``s = scale or D**-0.5``.
Shapes: x ``(..., Lx, C)``, w ``(C, D)``, j ``(..., Lj, D)`` -> ``(..., Lx, Lj)`` (Lx = Lj = L in JCA).
"""
from __future__ import annotations

import torch

from . import _autograd, _ext, _functorch, _registry
from ._validation import HALF_DTYPES, autocast_inputs, autocast_off, check_same, check_scale, check_tensor, upcast_half

OP = "jca_correlation"


def jca_correlation_ref(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Reference: ``tanh((x @ w) @ jᵀ · s)``; x ``(..., Lx, C)``, w ``(C, D)``, j ``(..., Lj, D)`` -> ``(..., Lx, Lj)``.

    float16/bfloat16 inputs are computed in float32.
    """
    s = w.shape[-1] ** -0.5 if scale is None else scale
    xc, wc, jc = upcast_half(x, w, j)
    return torch.tanh(torch.matmul(torch.matmul(xc, wc), jc.transpose(-1, -2)) * s).to(x.dtype)


def check_inputs(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float | None) -> float:
    """Validate x, w, j and return the effective scale."""
    check_tensor("x", x, min_dim=2)
    check_tensor("w", w, min_dim=2)
    check_tensor("j", j, min_dim=2)
    check_same(("x", "w", "j"), (x, w, j))
    if w.dim() != 2:
        raise ValueError(f"w must be a (C, D) matrix, got shape {tuple(w.shape)}")
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"x has C={x.shape[-1]} features (shape {tuple(x.shape)}) but w expects C={w.shape[0]} "
                         f"(shape {tuple(w.shape)})")
    if j.shape[-1] != w.shape[1]:
        raise ValueError(f"j has D={j.shape[-1]} features (shape {tuple(j.shape)}) but w produces D={w.shape[1]} "
                         f"(shape {tuple(w.shape)})")
    if x.shape[:-2] != j.shape[:-2]:
        raise ValueError(f"x batch dims {tuple(x.shape[:-2])} differ from j batch dims {tuple(j.shape[:-2])}")
    if x.shape[-2] != j.shape[-2]:
        raise ValueError(f"x has L={x.shape[-2]} steps (shape {tuple(x.shape)}) but j has L={j.shape[-2]} (shape "
                         f"{tuple(j.shape)}): Eq. 9 correlates the steps of one sequence, so both have the same L")
    if 0 in w.shape or x.shape[-2] == 0 or j.shape[-2] == 0:
        raise ValueError(f"x, w and j must be non-empty: x{tuple(x.shape)}, w{tuple(w.shape)}, j{tuple(j.shape)}")
    return check_scale(scale, w.shape[1] ** -0.5)


def jca_correlation(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float | None = None,
                    backend: str | None = None) -> torch.Tensor:
    """Joint correlation ``tanh((x @ w) @ jᵀ · s)`` (paper Eq. 9 in batch-first layout).

    Args:
        x: ``(..., L, C)`` one modality's features (``TLAB_a``).
        w: ``(C, D)`` the learnable ``W_J``.
        j: ``(..., L, D)`` the joint representation ``J`` of the same ``L`` steps (same batch dims as ``x``).
        scale: ``s``; defaults to ``D**-0.5``.
        backend: see :func:`aver_fast.tlab_attention`.

    Returns:
        ``(..., L, L)`` correlation matrix in ``(-1, 1)``. Under ``torch.autocast`` the inputs are cast to the
        autocast dtype first.
    """
    x, w, j = autocast_inputs(x, w, j)
    s = check_inputs(x, w, j, scale)
    with autocast_off(x):
        return _registry.select(OP, x.device, x.dtype, backend, (x, w, j, s)).fn(x, w, j, s)


def jca_correlation_pair(a: torch.Tensor, w_a: torch.Tensor, v: torch.Tensor, w_v: torch.Tensor, j: torch.Tensor,
                         scale: float | None = None, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Both modalities of a JCA layer: ``(jca_correlation(a, w_a, j), jca_correlation(v, w_v, j))``.

    With the Triton backend and equal shapes (the paper's 512/512), both go in one kernel launch.
    """
    a, w_a, v, w_v, j = autocast_inputs(a, w_a, v, w_v, j)
    with autocast_off(a):
        return _pair(a, w_a, v, w_v, j, scale, backend)


def _pair(a, w_a, v, w_v, j, scale, backend):
    s_a = check_inputs(a, w_a, j, scale)
    s_v = check_inputs(v, w_v, j, scale)
    b = _registry.select(OP, a.device, a.dtype, backend, (a, w_a, j, s_a))
    if b.name == "triton" and a.shape == v.shape and w_a.shape == w_v.shape:
        lead = a.shape[:-2]
        lx = a.shape[-2]
        lj = j.shape[-2]
        x = torch.stack([a.reshape(-1, lx, a.shape[-1]), v.reshape(-1, lx, v.shape[-1])])
        out = _TRITON(x, torch.stack([w_a, w_v]), j.reshape(-1, lj, j.shape[-1]), s_a)
        return out[0].reshape(*lead, lx, lj), out[1].reshape(*lead, lx, lj)
    return b.fn(a, w_a, j, s_a), _registry.select(OP, v.device, v.dtype, backend, (v, w_v, j, s_v)).fn(v, w_v, j, s_v)


# ------------------------------------------------------------------------------------------------ C++ backend
def _cpp(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float) -> torch.Tensor:
    """Launch ``torch.ops.aver_fast.jca_correlation`` (``csrc/cpu/jca_correlation.cpp``) on ``(N, L, C)`` /
    ``(N, L, D)`` views; float16/bfloat16 are computed in float32."""
    if x.dtype in HALF_DTYPES:
        return _cpp(x.float(), w.float(), j.float(), scale).to(x.dtype)
    lead = x.shape[:-2]
    lx = x.shape[-2]
    lj = j.shape[-2]
    out, _ = _CPP(x.reshape(-1, lx, x.shape[-1]), w, j.reshape(-1, lj, j.shape[-1]), scale)
    return out.reshape(*lead, lx, lj)


def _cpp_reference(x, w, j, scale):
    """The C++ op's outputs through the reference: the correlation and its second output ``x @ w``."""
    return jca_correlation_ref(x, w, j, scale), torch.matmul(x, w)


def _cpp_backward(grads, xwj, saved, scale):
    grad, grad_xw = grads
    x, w, j = xwj
    out, xw = saved
    if grad is None:
        grad = torch.zeros_like(out)
    dx, dw, dj = torch.ops.aver_fast.jca_correlation_backward(grad, out, xw, x, w, j, scale)
    if grad_xw is not None:  # xw is internal to the public function, but the op exposes it
        dx = dx + torch.matmul(grad_xw, w.t())
        dw = dw + torch.einsum("nlc,nld->cd", x, grad_xw)
    return dx, dw, dj


if _ext.LOADED:
    @torch.library.register_fake("aver_fast::jca_correlation")
    def _fake(x, w, j, scale):
        return x.new_empty((x.shape[0], x.shape[1], j.shape[1])), x.new_empty((x.shape[0], x.shape[1], w.shape[1]))

    @torch.library.register_fake("aver_fast::jca_correlation_backward")
    def _fake_backward(grad, out, xw, x, w, j, scale):
        return x.new_empty(x.shape), w.new_empty(w.shape), j.new_empty(j.shape)

    _CPP = _autograd.register("aver_fast::jca_correlation", _cpp_reference, _cpp_backward)
    _functorch.register_vmap("aver_fast::jca_correlation", (_functorch.BATCHED, _functorch.CONSTANT,
                                                            _functorch.BATCHED, None), fold=True)
    _functorch.register_vmap("aver_fast::jca_correlation_backward", (None,) * 7, per_sample=True)  # dw sums the batch


# ------------------------------------------------------------------------------------------------ Triton backend
@torch.library.custom_op("aver_fast::jca_correlation_triton", mutates_args=())
def _triton_forward(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float) -> torch.Tensor:
    """x ``(G, N, Lx, C)``, w ``(G, C, D)``, j ``(N, Lj, D)`` -> ``(G, N, Lx, Lj)`` (G modalities, one launch)."""
    from ..kernels import jca_correlation as kernel
    return kernel.forward(x.contiguous(), w.contiguous(), j.contiguous(), scale)


@_triton_forward.register_fake
def _(x, w, j, scale):
    return x.new_empty((x.shape[0], x.shape[1], x.shape[2], j.shape[1]))


@torch.library.custom_op("aver_fast::jca_correlation_triton_backward", mutates_args=())
def _triton_backward(grad: torch.Tensor, out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, j: torch.Tensor,
                     scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from ..kernels import jca_correlation as kernel
    return kernel.backward(grad, out, x.contiguous(), w.contiguous(), j.contiguous(), scale)


@_triton_backward.register_fake
def _(grad, out, x, w, j, scale):
    return x.new_empty(x.shape), w.new_empty(w.shape), j.new_empty(j.shape)


def _triton_reference(x, w, j, scale):
    """x ``(G, N, L, C)``, w ``(G, C, D)``, j ``(N, L, D)``: the reference per modality g."""
    return (torch.stack([jca_correlation_ref(x[g], w[g], j, scale) for g in range(x.shape[0])]),)


_TRITON = _autograd.register(_triton_forward, _triton_reference,  # x @ w is not saved: recomputed on chip
                             lambda grads, xwj, saved, scale: torch.ops.aver_fast.jca_correlation_triton_backward(
                                 grads[0], *saved, *xwj, scale))
# x is (G, N, L, C) and dw sums over N: both run once per sample under vmap
_functorch.register_vmap("aver_fast::jca_correlation_triton", (None,) * 4, per_sample=True)
_functorch.register_vmap("aver_fast::jca_correlation_triton_backward", (None,) * 6, per_sample=True)


def _triton(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float) -> torch.Tensor:
    lead = x.shape[:-2]
    lx = x.shape[-2]
    lj = j.shape[-2]
    out = _TRITON(x.reshape(1, -1, lx, x.shape[-1]), w.unsqueeze(0), j.reshape(-1, lj, j.shape[-1]), scale)
    return out.reshape(*lead, lx, lj)


# ------------------------------------------------------------------------------------------------ backend table
_registry.register(OP, _registry.Backend("reference", jca_correlation_ref))
GEMM_BOUND = ("x @ w is ~97% of the op's work (paper shape) and runs in the same BLAS call as in the reference; the "
              "C++ op measured 0.87-1.06x the reference, so automatic selection keeps the reference on CPU "
              "(benchmarks/RESULTS.md); request it with backend='cpp'")
_registry.register(OP, _registry.Backend("cpp", _cpp, _ext.cpp_available, _ext.cpu_kernels, auto_devices=(),
                                         requested_only=GEMM_BOUND,
                                         precision=_ext.cpu_half_outside))
_registry.register(OP, _registry.Backend("triton", _triton, _ext.triton_available, _ext.triton_device,
                                         auto_devices=("cuda",)))
