"""Triton kernels for the TLAB global-local attention ``O = A_G (A_L V)`` (paper Eq. 4-6).

``A_G = softmax_rows(S)``, ``A_L = softmax_rows(Sᵀ)``, ``S = s Q Kᵀ``; Q, K, V, O are ``(N, L, D)`` contiguous.

* short sequences (``L <= SHORT_MAX_L[dtype]``): up to 8 (batch, head) problems per program; S is computed once,
  kept on chip, both softmaxes come from it and both products are fused, looping over D in blocks. Nothing of size
  L×L reaches global memory; the backward recomputes S and writes dQ, dK, dV without atomics.
* long sequences: the two-pass form ``U = attn(query=K, key=Q, value=V)``, ``O = attn(query=Q, key=K, value=U)``
  with flash-style online softmax (memory O(L·D)); the backward runs the flash backward of each pass (dK/dV per key
  block, dQ per query block: no atomics, deterministic).

float16/bfloat16/float32 inputs, float32 accumulation (float32 products use IEEE precision, not TF32).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import block, dot, dot_mode
from ._plan import Plan, Target, current_target

# the short path keeps an L x L tile on chip: up to 64 in float16/bfloat16; float32 (IEEE products, twice the
# registers) up to 32, its backward at 64 spills 10-29 KB per thread (at 128 it needed 224-292 KB of shared memory)
SHORT_MAX_L = {torch.float32: 32, torch.float16: 64, torch.bfloat16: 64}
LONG_MAX_D = 256  # the long path keeps a full row of D on chip


# ----------------------------------------------------------------------------------------------- short sequences
@triton.jit
def _tile(base, offs_l, offs_d, d0, L, D):
    """Offsets and mask of the (all rows, columns d0 + offs_d) tile of one (L, D) problem at ``base``."""
    return base + offs_l[:, None] * D + d0 + offs_d[None, :], (offs_l[:, None] < L) & (d0 + offs_d[None, :] < D)


@triton.jit
def _scores(Q, K, base, L, D, scale, offs_l, offs_d, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
            DOT: tl.constexpr):
    """S = scale Q Kᵀ for one problem, (BLOCK_L, BLOCK_L) in float32 (rows/cols >= L are zero)."""
    s = tl.zeros((BLOCK_L, BLOCK_L), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ptr, m = _tile(base, offs_l, offs_d, d0, L, D)
        q = tl.load(Q + ptr, mask=m, other=0.0)
        k = tl.load(K + ptr, mask=m, other=0.0)
        s += dot(q, tl.trans(k), DOT)
    return s * scale


@triton.jit
def _softmaxes(s, offs_l, L):
    """A_G = softmax over rows of S, P = softmax over columns of S (P[j, i] = A_L[i, j]); padding masked out."""
    valid = offs_l < L
    neg = -1.0e30
    sr = tl.where(valid[None, :], s, neg)
    a_g = tl.exp(sr - tl.max(sr, axis=1)[:, None])
    a_g = a_g / tl.sum(a_g, axis=1)[:, None]
    sc = tl.where(valid[:, None], s, neg)
    p = tl.exp(sc - tl.max(sc, axis=0)[None, :])
    p = p / tl.sum(p, axis=0)[None, :]
    return a_g, p


@triton.jit
def _tlab_fwd_short(Q, K, V, O, N, L, D, scale, PROBLEMS: tl.constexpr, BLOCK_L: tl.constexpr,
                    BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """PROBLEMS consecutive (batch, head) problems per program (small L leaves a program little work each)."""
    offs_l = tl.arange(0, BLOCK_L)
    offs_d = tl.arange(0, BLOCK_D)
    dt = Q.dtype.element_ty
    for i in range(PROBLEMS):
        b = tl.program_id(0) * PROBLEMS + i
        if b < N:
            base = b.to(tl.int64) * L * D
            s = _scores(Q, K, base, L, D, scale, offs_l, offs_d, BLOCK_L, BLOCK_D, DOT)
            a_g, p = _softmaxes(s, offs_l, L)
            a_g = a_g.to(dt)
            p_t = tl.trans(p).to(dt)
            for d0 in range(0, D, BLOCK_D):
                ptr, m = _tile(base, offs_l, offs_d, d0, L, D)
                v = tl.load(V + ptr, mask=m, other=0.0)
                u = dot(p_t, v, DOT)  # U = A_L V
                o = dot(a_g, u.to(dt), DOT)  # O = A_G U
                tl.store(O + ptr, o.to(O.dtype.element_ty), mask=m)


@triton.jit
def _tlab_bwd_short(Q, K, V, GO, DQ, DK, DV, N, L, D, scale, PROBLEMS: tl.constexpr, BLOCK_L: tl.constexpr,
                    BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    offs_l = tl.arange(0, BLOCK_L)
    offs_d = tl.arange(0, BLOCK_D)
    dt = Q.dtype.element_ty
    valid = offs_l < L
    for i in range(PROBLEMS):
        b = tl.program_id(0) * PROBLEMS + i
        if b < N:
            base = b.to(tl.int64) * L * D
            s = _scores(Q, K, base, L, D, scale, offs_l, offs_d, BLOCK_L, BLOCK_D, DOT)
            a_g, p = _softmaxes(s, offs_l, L)
            d_ag = tl.zeros((BLOCK_L, BLOCK_L), dtype=tl.float32)  # dA_G
            d_pt = tl.zeros((BLOCK_L, BLOCK_L), dtype=tl.float32)  # d_pt[j, i] = dA_L[i, j]
            for d0 in range(0, D, BLOCK_D):
                ptr, m = _tile(base, offs_l, offs_d, d0, L, D)
                v = tl.load(V + ptr, mask=m, other=0.0)
                go = tl.load(GO + ptr, mask=m, other=0.0)
                u = dot(tl.trans(p).to(dt), v, DOT)
                d_ag += dot(go, tl.trans(u.to(dt)), DOT)
                du = dot(tl.trans(a_g).to(dt), go, DOT)
                tl.store(DV + ptr, dot(p.to(dt), du.to(dt), DOT).to(DV.dtype.element_ty), mask=m)
                d_pt += dot(v, tl.trans(du.to(dt)), DOT)
            ds = a_g * (d_ag - tl.sum(d_ag * a_g, axis=1)[:, None]) + \
                p * (d_pt - tl.sum(d_pt * p, axis=0)[None, :])
            ds = tl.where(valid[:, None] & valid[None, :], ds * scale, 0.0).to(dt)
            for d0 in range(0, D, BLOCK_D):
                ptr, m = _tile(base, offs_l, offs_d, d0, L, D)
                q = tl.load(Q + ptr, mask=m, other=0.0)
                k = tl.load(K + ptr, mask=m, other=0.0)
                tl.store(DQ + ptr, dot(ds, k, DOT).to(DQ.dtype.element_ty), mask=m)
                tl.store(DK + ptr, dot(tl.trans(ds), q, DOT).to(DK.dtype.element_ty), mask=m)


# ----------------------------------------------------------------------------------------------- long sequences
@triton.jit
def _rows(Ptr, base, rows, offs_d, L, D):
    """Rows ``rows`` (masked to < L), columns ``offs_d`` (masked to < D) of the (L, D) matrix at ``base``."""
    return tl.load(Ptr + base + rows[:, None] * D + offs_d[None, :],
                   mask=(rows[:, None] < L) & (offs_d[None, :] < D), other=0.0)


@triton.jit
def _store_rows(Ptr, base, rows, offs_d, L, D, x):
    tl.store(Ptr + base + rows[:, None] * D + offs_d[None, :], x.to(Ptr.dtype.element_ty),
             mask=(rows[:, None] < L) & (offs_d[None, :] < D))


@triton.jit
def _row_stats(Lse, Delta, b, rows, L):
    """The forward's row log-sum-exp and the backward's delta = rowsum(dO ∘ O) for ``rows``."""
    ptr = b.to(tl.int64) * L + rows
    return tl.load(Lse + ptr, mask=rows < L, other=0.0), tl.load(Delta + ptr, mask=rows < L, other=0.0)


@triton.jit
def _attn_fwd(Qry, Key, Val, Out, Lse, L, D, scale, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """Flash forward of softmax(Qry Keyᵀ s) Val for one (problem, query block); also the row log-sum-exp."""
    b = tl.program_id(1)
    start_m = tl.program_id(0) * BLOCK_M
    base = b.to(tl.int64) * L * D
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q = _rows(Qry, base, offs_m, offs_d, L, D)
    m_i = tl.full((BLOCK_M,), -1.0e30, dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start_n in range(0, L, BLOCK_N):
        n = start_n + offs_n
        k = _rows(Key, base, n, offs_d, L, D)
        v = _rows(Val, base, n, offs_d, L, D)
        s = dot(q, tl.trans(k), DOT) * scale
        s = tl.where(n[None, :] < L, s, -1.0e30)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + dot(p.to(v.dtype), v, DOT)
        m_i = m_new
    _store_rows(Out, base, offs_m, offs_d, L, D, acc / l_i[:, None])
    tl.store(Lse + b.to(tl.int64) * L + offs_m, m_i + tl.log(l_i), mask=offs_m < L)


@triton.jit
def _attn_bwd_delta(Out, GOut, Delta, L, D, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(1)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    o = _rows(Out, b.to(tl.int64) * L * D, offs_m, offs_d, L, D).to(tl.float32)
    do = _rows(GOut, b.to(tl.int64) * L * D, offs_m, offs_d, L, D).to(tl.float32)
    tl.store(Delta + b.to(tl.int64) * L + offs_m, tl.sum(o * do, axis=1), mask=offs_m < L)


@triton.jit
def _attn_bwd_tile(q, k, v, do, lse, delta, rows, cols, L, scale, DOT: tl.constexpr):
    """For one (query rows, key cols) tile: the probabilities P and dS = P ∘ (dO Vᵀ - delta), padding zeroed."""
    s = dot(q, tl.trans(k), DOT) * scale
    p = tl.exp(s - lse[:, None])
    p = tl.where((rows[:, None] < L) & (cols[None, :] < L), p, 0.0)
    ds = p * (dot(do, tl.trans(v), DOT) - delta[:, None])
    return p, ds


@triton.jit
def _attn_bwd_dkdv(Qry, Key, Val, GOut, Lse, Delta, DKey, DVal, L, D, scale, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """dKey, dVal for one key block, looping over all query blocks (no atomics)."""
    b = tl.program_id(1)
    base = b.to(tl.int64) * L * D
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    k = _rows(Key, base, offs_n, offs_d, L, D)
    v = _rows(Val, base, offs_n, offs_d, L, D)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for start_m in range(0, L, BLOCK_M):
        m = start_m + offs_m
        q = _rows(Qry, base, m, offs_d, L, D)
        do = _rows(GOut, base, m, offs_d, L, D)
        lse, delta = _row_stats(Lse, Delta, b, m, L)
        p, ds = _attn_bwd_tile(q, k, v, do, lse, delta, m, offs_n, L, scale, DOT)
        dv += dot(tl.trans(p).to(do.dtype), do, DOT)
        dk += dot(tl.trans(ds).to(q.dtype), q, DOT)
    _store_rows(DKey, base, offs_n, offs_d, L, D, dk * scale)
    _store_rows(DVal, base, offs_n, offs_d, L, D, dv)


@triton.jit
def _attn_bwd_dq(Qry, Key, Val, GOut, Lse, Delta, DQry, L, D, scale, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_D: tl.constexpr, DOT: tl.constexpr):
    """dQry for one query block, looping over all key blocks (no atomics)."""
    b = tl.program_id(1)
    base = b.to(tl.int64) * L * D
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q = _rows(Qry, base, offs_m, offs_d, L, D)
    do = _rows(GOut, base, offs_m, offs_d, L, D)
    lse, delta = _row_stats(Lse, Delta, b, offs_m, L)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for start_n in range(0, L, BLOCK_N):
        n = start_n + offs_n
        k = _rows(Key, base, n, offs_d, L, D)
        v = _rows(Val, base, n, offs_d, L, D)
        _, ds = _attn_bwd_tile(q, k, v, do, lse, delta, offs_m, n, L, scale, DOT)
        dq += dot(ds.to(k.dtype), k, DOT)
    _store_rows(DQry, base, offs_m, offs_d, L, D, dq * scale)


# ----------------------------------------------------------------------------------------------- plans
# Flash-path tiles (BLOCK_M x BLOCK_D), keyed by (float32?, forward or backward), measured on compiled kernels with
# one pipeline stage (`aver-fast check-gpu-build`): shared memory per tile element, and the most tile elements 4
# warps hold in registers without spilling (float32 IEEE products need about twice the registers of the
# tensor-core float16/bfloat16 ones). The largest BLOCK_M within both is used.
_FLASH_BYTES = {(True, "fwd"): 12, (True, "bwd"): 24, (False, "fwd"): 6, (False, "bwd"): 12}
_FLASH_ELEMENTS = {(True, "fwd"): 2048, (True, "bwd"): 2048, (False, "fwd"): 8192, (False, "bwd"): 8192}


def use_short_path(L: int, dtype: torch.dtype) -> bool:
    """Whole rows fit on chip: the fused short kernels (L <= SHORT_MAX_L[dtype]); else the two-pass flash path."""
    return L <= SHORT_MAX_L[dtype]


def problems_per_program(n: int, L: int) -> int:
    """Pack several small problems into one program: 8 at L <= 16, 4 at L <= 32, 2 at L <= 64, else 1."""
    per = 8 if L <= 16 else 4 if L <= 32 else 2 if L <= 64 else 1
    return max(1, min(per, n))


def _short_plan(backward: bool, n: int, L: int, D: int, dtype: torch.dtype) -> Plan:
    """The fused short kernel: an L x L tile on chip, looping over D in blocks of up to 64."""
    bl, bd = block(L), block(D, hi=64)
    per = problems_per_program(n, L)
    return Plan.of(_tlab_bwd_short if backward else _tlab_fwd_short, (triton.cdiv(n, per),),
                   dict(PROBLEMS=per, BLOCK_L=bl, BLOCK_D=bd, DOT=dot_mode(dtype)),
                   dict.fromkeys("Q K V O GO DQ DK DV".split(), dtype))


def _flash_plans(n: int, L: int, D: int, dtype: torch.dtype, target: Target) -> dict[str, Plan]:
    """The flash kernels of one pass: ``fwd``, and the backward's ``delta``, ``dkdv`` and ``dq``."""
    bd = block(D, hi=LONG_MAX_D)
    full = dtype == torch.float32

    def tile(kind: str) -> int:
        fits = [bm for bm in (64, 32, 16) if bm * bd <= _FLASH_ELEMENTS[full, kind]
                and _FLASH_BYTES[full, kind] * bm * bd <= target.shared_memory]
        return fits[0] if fits else 16
    fwd, bwd = tile("fwd"), tile("bwd")
    io = dict.fromkeys("Qry Key Val Out GOut DKey DVal DQry".split(), dtype) | {"Lse": torch.float32,
                                                                                   "Delta": torch.float32}
    mode = dot_mode(dtype)

    def plan(kernel, bm: int, **consts) -> Plan:
        return Plan.of(kernel, (triton.cdiv(L, bm), n), consts, io)
    return {"fwd": plan(_attn_fwd, fwd, BLOCK_M=fwd, BLOCK_N=fwd, BLOCK_D=bd, DOT=mode),
            "delta": plan(_attn_bwd_delta, bwd, BLOCK_M=bwd, BLOCK_D=bd),
            "dkdv": plan(_attn_bwd_dkdv, bwd, BLOCK_M=bwd, BLOCK_N=bwd, BLOCK_D=bd, DOT=mode),
            "dq": plan(_attn_bwd_dq, bwd, BLOCK_M=bwd, BLOCK_N=bwd, BLOCK_D=bd, DOT=mode)}


def plans(n: int, L: int, D: int, dtype: torch.dtype, target: Target, short: bool | None = None) -> list[Plan]:
    """Every launch of a forward and backward at this shape (what the compile gate compiles)."""
    short = use_short_path(L, dtype) if short is None else short
    if short:
        return [_short_plan(False, n, L, D, dtype), _short_plan(True, n, L, D, dtype)]
    return list(_flash_plans(n, L, D, dtype, target).values())


# ----------------------------------------------------------------------------------------------- launchers
def _attn(qry, key, val, scale, flash):
    n, L, D = qry.shape
    out = torch.empty_like(qry)
    lse = torch.empty((n, L), dtype=torch.float32, device=qry.device)
    flash["fwd"].launch(qry, key, val, out, lse, L, D, scale)
    return out, lse


def _attn_backward(qry, key, val, out, lse, gout, scale, flash):
    n, L, D = qry.shape
    delta = torch.empty((n, L), dtype=torch.float32, device=qry.device)
    flash["delta"].launch(out, gout, delta, L, D)
    dqry, dkey, dval = torch.empty_like(qry), torch.empty_like(key), torch.empty_like(val)
    flash["dkdv"].launch(qry, key, val, gout, lse, delta, dkey, dval, L, D, scale)
    flash["dq"].launch(qry, key, val, gout, lse, delta, dqry, L, D, scale)
    return dqry, dkey, dval


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, short: bool | None = None):
    """``(O, U, lse_u, lse_o)`` for contiguous ``(N, L, D)`` inputs; U and the log-sum-exps are only kept (non-empty)
    on the long path, whose backward needs them."""
    n, L, D = q.shape
    short = use_short_path(L, q.dtype) if short is None else short
    if short:
        out = torch.empty_like(q)
        _short_plan(False, n, L, D, q.dtype).launch(q, k, v, out, n, L, D, scale)
        empty = dict(device=q.device)
        return (out, torch.empty(0, dtype=q.dtype, **empty), torch.empty(0, dtype=torch.float32, **empty),
                torch.empty(0, dtype=torch.float32, **empty))
    if D > LONG_MAX_D:
        raise ValueError(f"the long-sequence Triton path needs D <= {LONG_MAX_D}, got D={D}")
    flash = _flash_plans(n, L, D, q.dtype, current_target(q.device))
    u, lse_u = _attn(k, q, v, scale, flash)  # U = softmax(K Qᵀ s) V = A_L V
    out, lse_o = _attn(q, k, u, scale, flash)  # O = softmax(Q Kᵀ s) U = A_G U
    return out, u, lse_u, lse_o


def backward(grad, q, k, v, out, u, lse_u, lse_o, scale):
    """``(dQ, dK, dV)``; the short path (empty ``u``) recomputes everything from q, k, v."""
    n, L, D = q.shape
    grad = grad.contiguous()
    if u.numel() == 0:
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _short_plan(True, n, L, D, q.dtype).launch(q, k, v, grad, dq, dk, dv, n, L, D, scale)
        return dq, dk, dv
    flash = _flash_plans(n, L, D, q.dtype, current_target(q.device))
    dq_o, dk_o, du = _attn_backward(q, k, u, out, lse_o, grad, scale, flash)
    dk_u, dq_u, dv = _attn_backward(k, q, v, u, lse_u, du, scale, flash)
    return dq_o + dq_u, dk_o + dk_u, dv
