"""Triton kernels for the JCA correlation ``C = tanh(s (X W) Jᵀ)`` (paper Eq. 9).

Shapes: x ``(G, N, Lx, C)``, w ``(G, C, D)``, j ``(N, Lj, D)`` -> ``(G, N, Lx, Lj)``; G = 2 runs both modalities of a
JCA layer (same C) in one launch. The ``X W`` tile is computed on chip, block by block of D, and multiplied by ``Jᵀ``
straight away, with the scale and tanh in the epilogue: ``X W`` never reaches global memory. The backward
recomputes it per tile for ``dJ = dZᵀ (X W)``; ``dX = dXW Wᵀ`` and ``dW = Xᵀ dXW`` are two GEMMs in PyTorch.
float16/bfloat16/float32 inputs, float32 accumulation (IEEE float32 products for float32 inputs).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import block, dot, dot_mode, tanh
from ._plan import Plan


@triton.jit
def _xw_tile(X, W, x_base, w_base, rows, n_rows, d0, C, D, offs_c, offs_d, BLOCK_R: tl.constexpr,
             BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """(X W)[rows, d0:d0+BLOCK_D] in float32."""
    acc = tl.zeros((BLOCK_R, BLOCK_D), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        x = tl.load(X + x_base + rows[:, None] * C + c0 + offs_c[None, :],
                    mask=(rows[:, None] < n_rows) & (c0 + offs_c[None, :] < C), other=0.0)
        w = tl.load(W + w_base + (c0 + offs_c[:, None]) * D + d0 + offs_d[None, :],
                    mask=(c0 + offs_c[:, None] < C) & (d0 + offs_d[None, :] < D), other=0.0)
        acc += dot(x, w, DOT)
    return acc


@triton.jit
def _jca_fwd(X, W, J, Out, N, Lx, Lj, C, D, scale, BLOCK_X: tl.constexpr, BLOCK_J: tl.constexpr,
             BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    gn = tl.program_id(0)  # (modality, batch) pair
    g = gn // N
    n = gn % N
    rows = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)
    cols = tl.program_id(2) * BLOCK_J + tl.arange(0, BLOCK_J)
    offs_c = tl.arange(0, BLOCK_C)
    offs_d = tl.arange(0, BLOCK_D)
    x_base = gn.to(tl.int64) * Lx * C
    w_base = g.to(tl.int64) * C * D
    j_base = n.to(tl.int64) * Lj * D
    acc = tl.zeros((BLOCK_X, BLOCK_J), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        xw = _xw_tile(X, W, x_base, w_base, rows, Lx, d0, C, D, offs_c, offs_d, BLOCK_X, BLOCK_C, BLOCK_D, DOT)
        jt = tl.load(J + j_base + cols[None, :] * D + d0 + offs_d[:, None],
                     mask=(cols[None, :] < Lj) & (d0 + offs_d[:, None] < D), other=0.0)
        acc += dot(xw.to(jt.dtype), jt, DOT)
    out = tanh(acc * scale)
    tl.store(Out + gn.to(tl.int64) * Lx * Lj + rows[:, None] * Lj + cols[None, :], out.to(Out.dtype.element_ty),
             mask=(rows[:, None] < Lx) & (cols[None, :] < Lj))


@triton.jit
def _dz_tile(G, O, base, rows, n_rows, cols, n_cols, Lj, scale):
    """dZ = s (1 - C²) dC for a tile, float32 (zero outside the matrix)."""
    m = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    ptr = base + rows[:, None] * Lj + cols[None, :]
    g = tl.load(G + ptr, mask=m, other=0.0).to(tl.float32)
    o = tl.load(O + ptr, mask=m, other=0.0).to(tl.float32)
    return g * (1.0 - o * o) * scale


@triton.jit
def _jca_bwd_dxw(G, O, J, DXW, N, Lx, Lj, D, scale, BLOCK_X: tl.constexpr, BLOCK_J: tl.constexpr,
                 BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """dXW[g, n] = dZ J for one (rows, D block) tile."""
    gn = tl.program_id(0)
    n = gn % N
    rows = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)
    offs_d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_j = tl.arange(0, BLOCK_J)
    acc = tl.zeros((BLOCK_X, BLOCK_D), dtype=tl.float32)
    for j0 in range(0, Lj, BLOCK_J):
        cols = j0 + offs_j
        dz = _dz_tile(G, O, gn.to(tl.int64) * Lx * Lj, rows, Lx, cols, Lj, Lj, scale)
        j = tl.load(J + n.to(tl.int64) * Lj * D + cols[:, None] * D + offs_d[None, :],
                    mask=(cols[:, None] < Lj) & (offs_d[None, :] < D), other=0.0)
        acc += dot(dz.to(j.dtype), j, DOT)
    tl.store(DXW + gn.to(tl.int64) * Lx * D + rows[:, None] * D + offs_d[None, :], acc,
             mask=(rows[:, None] < Lx) & (offs_d[None, :] < D))


@triton.jit
def _jca_bwd_dj(X, W, G, O, DJ, N, NG, Lx, Lj, C, D, scale, BLOCK_X: tl.constexpr, BLOCK_J: tl.constexpr,
                BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """dJ[n] = sum over modalities g of dZ[g, n]ᵀ (X W)[g, n] for one (cols, D block) tile; X W recomputed."""
    n = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    d0 = tl.program_id(2) * BLOCK_D
    offs_d = tl.arange(0, BLOCK_D)
    offs_c = tl.arange(0, BLOCK_C)
    offs_x = tl.arange(0, BLOCK_X)
    acc = tl.zeros((BLOCK_J, BLOCK_D), dtype=tl.float32)
    for g in range(0, NG):
        gn = g * N + n
        for x0 in range(0, Lx, BLOCK_X):
            rows = x0 + offs_x
            xw = _xw_tile(X, W, gn.to(tl.int64) * Lx * C, (gn // N).to(tl.int64) * C * D, rows, Lx, d0, C, D, offs_c,
                          offs_d, BLOCK_X, BLOCK_C, BLOCK_D, DOT)
            dz = _dz_tile(G, O, gn.to(tl.int64) * Lx * Lj, rows, Lx, cols, Lj, Lj, scale)
            acc += dot(tl.trans(dz), xw, DOT)
    tl.store(DJ + n.to(tl.int64) * Lj * D + cols[:, None] * D + d0 + offs_d[None, :], acc.to(DJ.dtype.element_ty),
             mask=(cols[:, None] < Lj) & (d0 + offs_d[None, :] < D))


def plans(g: int, n: int, lx: int, lj: int, c: int, d: int, dtype: torch.dtype) -> dict[str, Plan]:
    """The launches of a forward (``fwd``) and backward (``dxw``, ``dj``) at this shape. Tiles of at most 64 x 64
    with one pipeline stage: <= 32 KB of shared memory in every dtype (the default three stages needed 112 KB)."""
    bx, bj, bc, bd = block(lx, hi=64), block(lj, hi=64), block(c, hi=32), block(d, hi=64)
    mode = dot_mode(dtype)
    io = dict.fromkeys("X W J Out G O DJ".split(), dtype) | {"DXW": torch.float32}

    def plan(kernel, grid, **consts) -> Plan:
        return Plan.of(kernel, grid, consts | {"DOT": mode}, io)
    return {"fwd": plan(_jca_fwd, (g * n, triton.cdiv(lx, bx), triton.cdiv(lj, bj)), BLOCK_X=bx, BLOCK_J=bj,
                        BLOCK_C=bc, BLOCK_D=bd),
            "dxw": plan(_jca_bwd_dxw, (g * n, triton.cdiv(lx, bx), triton.cdiv(d, bd)), BLOCK_X=bx, BLOCK_J=bj,
                        BLOCK_D=bd),
            "dj": plan(_jca_bwd_dj, (n, triton.cdiv(lj, bj), triton.cdiv(d, bd)), BLOCK_X=bx, BLOCK_J=bj, BLOCK_C=bc,
                       BLOCK_D=bd)}


def forward(x: torch.Tensor, w: torch.Tensor, j: torch.Tensor, scale: float) -> torch.Tensor:
    """x ``(G, N, Lx, C)``, w ``(G, C, D)``, j ``(N, Lj, D)``, all contiguous -> ``(G, N, Lx, Lj)``."""
    g, n, lx, c = x.shape
    lj, d = j.shape[1], j.shape[2]
    out = torch.empty((g, n, lx, lj), dtype=x.dtype, device=x.device)
    plans(g, n, lx, lj, c, d, x.dtype)["fwd"].launch(x, w, j, out, n, lx, lj, c, d, scale)
    return out


def backward(grad: torch.Tensor, out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, j: torch.Tensor,
             scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dX, dW, dJ)`` of :func:`forward`."""
    g, n, lx, c = x.shape
    lj, d = j.shape[1], j.shape[2]
    grad = grad.contiguous()
    launches = plans(g, n, lx, lj, c, d, x.dtype)
    dxw = torch.empty((g, n, lx, d), dtype=torch.float32, device=x.device)
    launches["dxw"].launch(grad, out, j, dxw, n, lx, lj, d, scale)
    dj = torch.empty_like(j)
    launches["dj"].launch(x, w, grad, out, dj, n, g, lx, lj, c, d, scale)
    dxw_c = dxw.to(x.dtype)
    dx = torch.matmul(dxw_c, w.unsqueeze(1).transpose(-1, -2))  # (G, N, Lx, C)
    dw = torch.matmul(x.reshape(g, n * lx, c).transpose(1, 2).float(), dxw.reshape(g, n * lx, d)).to(w.dtype)
    return dx, dw, dj
