"""The C++ TLAB kernel with a call's problems split by rows across threads (csrc/cpu/tlab_attention.cpp,
``row_blocks``: at most half as many problems as threads, each of 2^18 multiply-adds or more): outputs and gradients
against the reference on every ISA and dtype, both associations of the product, odd sizes, with and without the
kept tensors, gradcheck, and thread-count reproducibility."""
import contextlib

import pytest
import torch

import aver_fast
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ._parity import require_cpp
from .test_tlab_attention_backends import run_case

SPLIT_MIN_WORK = 1 << 18  # csrc/cpu/tlab_attention.cpp
HALF_TOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3}
# (batch dims..., L, D, threads): lone problems in 2 and 4 blocks, two problems in 2 blocks each, odd L and D (row
# blocks of unequal length), L < D (A_G A_L first) and L >= D (A_L V first), and the smallest problem that splits
CASES = [(1, 64, 64, 2), (1, 97, 203, 4), (2, 128, 37, 4), (1, 65, 96, 4), (1, 130, 64, 2), (1, 2, 33, 256, 4)]


@contextlib.contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _shape(case):
    return case[:-1]


def test_the_cases_split():
    """Each case has at most half as many problems as its threads and at least SPLIT_MIN_WORK per problem, and the
    smallest one is exactly at the threshold, so these tests run the split path and nothing else."""
    for case in CASES:
        *batch, L, D = _shape(case)
        assert 2 * torch.Size(batch).numel() <= case[-1] and L * L * D >= SPLIT_MIN_WORK
    assert min(c[-3] ** 2 * c[-2] for c in CASES) == SPLIT_MIN_WORK


@pytest.mark.usefixtures("every_isa")
def test_split_parity_every_isa():
    for case in CASES:
        with threads(case[-1]):
            for dtype in (torch.float32, torch.float64):
                run_case(_shape(case), dtype, "cpp")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("native", ["1", "0"], ids=["native-bf16", "no-native-bf16"])
def test_split_half_inputs(dtype, native, monkeypatch):
    """float16/bfloat16 (and bfloat16 Q Kᵀ natively where the CPU has AVX512-BF16, D >= 128): as the reference in
    the same dtype, outputs and gradients, with the dtype kept."""
    require_cpp()
    monkeypatch.setenv("AVER_FAST_CPU_LOW_PRECISION", native)
    for case in [(1, 64, 128, 2), (1, 97, 203, 4), (1, 130, 64, 2)]:
        qkv = [torch.randn(_shape(case), dtype=dtype, requires_grad=True) for _ in range(3)]
        ref = [t.detach().clone().requires_grad_() for t in qkv]
        with threads(case[-1]):
            out = aver_fast.tlab_attention(*qkv, backend="cpp")
            want = aver_fast.tlab_attention(*ref, backend="reference")
            g = torch.randn_like(out)
            out.backward(g)
            want.backward(g)
        assert out.dtype == dtype
        tol = HALF_TOL[dtype]
        torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)
        for a, b in zip(qkv, ref, strict=True):
            assert a.grad.dtype == dtype
            torch.testing.assert_close(a.grad.float(), b.grad.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("case", CASES[:2], ids=["right", "left"])
def test_split_without_gradients_matches_the_kept_path(case):
    """The inference op (A_G, A_Lᵀ and the intermediate in the call's own work space) against the training op
    (kept tensors) and the reference, and the kept A_G, A_Lᵀ against the softmaxes themselves."""
    require_cpp()
    *_, L, D = _shape(case)
    q, k, v = (torch.randn(_shape(case), dtype=torch.float64) for _ in range(3))
    with threads(case[-1]):
        out = torch.ops.aver_fast.tlab_attention(q, k, v, D ** -0.5)
        train, a_g, p, _ = torch.ops.aver_fast.tlab_attention_train(q, k, v, D ** -0.5)
    torch.testing.assert_close(out, tlab_attention_ref(q, k, v), rtol=0, atol=1e-12)
    torch.testing.assert_close(out, train, rtol=0, atol=1e-13)
    s = q @ k.mT * D ** -0.5
    torch.testing.assert_close(a_g, s.softmax(-1), rtol=0, atol=1e-14)
    torch.testing.assert_close(p, s.softmax(-2), rtol=0, atol=1e-14)


def test_split_gradcheck_and_gradgradcheck_float64():
    require_cpp()
    q, k, v = (torch.randn(1, 64, 64, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def fn(a, b, c):
        return aver_fast.tlab_attention(a, b, c, backend="cpp")

    with threads(2):
        assert torch.autograd.gradcheck(fn, (q, k, v), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (q, k, v), fast_mode=True)


def test_split_results_are_reproducible_and_agree_across_thread_counts():
    """Bitwise the same for the same thread count; across thread counts (1: unsplit, 2 and 4 blocks) the same to
    rounding (the column sums add the blocks' partial sums)."""
    require_cpp()
    q, k, v, g = (torch.randn(1, 97, 160) for _ in range(4))
    results = {}
    for n in (1, 2, 4, 2):
        with threads(n):
            qq = q.clone().requires_grad_()
            out = aver_fast.tlab_attention(qq, k, v, backend="cpp")
            out.backward(g)
        if n in results:
            assert torch.equal(results[n][0], out) and torch.equal(results[n][1], qq.grad)
        results[n] = (out, qq.grad)
    for n in (2, 4):
        torch.testing.assert_close(results[n][0], results[1][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[n][1], results[1][1], rtol=1e-5, atol=1e-5)


def test_calls_with_more_problems_are_not_split():
    """More than half as many problems as threads: one problem per task, so the result is bitwise the one-thread
    result; one problem fewer than the threshold splits (and then differs from it in the last bits)."""
    require_cpp()
    q, k, v = (torch.randn(3, 97, 160) for _ in range(3))
    with threads(1):
        alone = torch.ops.aver_fast.tlab_attention(q, k, v, 0.1)
    with threads(4):
        assert torch.equal(torch.ops.aver_fast.tlab_attention(q, k, v, 0.1), alone)  # 2 * 3 > 4
        split = torch.ops.aver_fast.tlab_attention(q[:2], k[:2], v[:2], 0.1)  # 2 * 2 <= 4: two blocks each
    assert not torch.equal(split, alone[:2])
    torch.testing.assert_close(split, alone[:2], rtol=1e-5, atol=1e-6)


def test_split_large_scores_stay_finite():
    """Scores ~1e3 in 4 row blocks: every column's softmax is shifted by its maximum over all blocks."""
    require_cpp()
    q, k = (torch.randn(1, 70, 64) * 1e2 for _ in range(2))
    v = torch.randn(1, 70, 64)
    with threads(4):
        out = aver_fast.tlab_attention(q, k, v, backend="cpp")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, tlab_attention_ref(q, k, v), rtol=1e-4, atol=1e-3)
