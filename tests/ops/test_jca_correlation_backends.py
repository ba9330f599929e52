"""Fast backends of jca_correlation against the reference: outputs, gradients, gradcheck, edge cases."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aver_fast
from aver_fast.ops.jca_correlation import jca_correlation_ref

from .._ids import dtype_id
from ._parity import DTYPES, assert_parity, require_cpp

# (batch, Lx, Lj, C, D): the paper's (16, 16, 16, 512, 1024) in small and odd sizes (the op needs Lx = Lj; the
# kernels' rectangles are tested in tests/kernels)
SHAPES = [((2,), 16, 16, 64, 128), ((3,), 1, 1, 8, 8), ((2,), 7, 7, 60, 33), ((1,), 33, 33, 5, 64),
          ((2, 3), 16, 16, 12, 20), ((4,), 257, 257, 8, 16)]


def run_case(batch, lx, lj, c, d, dtype, scale=None, mag=1.0):
    x, j = torch.randn(*batch, lx, c, dtype=torch.float64) * mag, torch.randn(*batch, lj, d, dtype=torch.float64)
    w = torch.randn(c, d, dtype=torch.float64) / c ** 0.5
    g = torch.randn(*batch, lx, lj, dtype=torch.float64)
    leaves = []
    outs = []
    for dt, backend in ((torch.float64, "reference"), (dtype, "reference"), (dtype, "cpp")):
        ts = [t.to(dt).clone().requires_grad_() for t in (x, w, j)]
        out = aver_fast.jca_correlation(*ts, scale, backend=backend)
        out.backward(g.to(dt))
        leaves.append(ts)
        outs.append(out)
    (ref, ref_same, fast) = outs
    assert_parity("out", fast, ref, ref_same)
    for i, name in enumerate(("dx", "dw", "dj")):
        assert_parity(name, leaves[2][i].grad, leaves[0][i].grad, leaves[1][i].grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_cpp_parity(shape, dtype):
    require_cpp()
    run_case(*shape, dtype)


@pytest.mark.usefixtures("every_isa")
def test_cpp_parity_every_isa():
    for dtype in DTYPES:
        run_case((2,), 16, 16, 24, 40, dtype)
        run_case((1,), 9, 9, 7, 3, dtype)


def test_cpp_gradcheck_float64():
    require_cpp()
    x, j = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True), \
        torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: aver_fast.jca_correlation(a, b, c, backend="cpp"), (x, w, j))


def test_cpp_non_contiguous_and_large_inputs():
    require_cpp()
    x = torch.randn(3, 20, 16, dtype=torch.float64).mT  # (3, 16, 20) view
    j = torch.randn(3, 16, 30, dtype=torch.float64)[..., ::2]  # (3, 16, 15) strided
    w = torch.randn(15, 20, dtype=torch.float64).t()  # (20, 15) view
    torch.testing.assert_close(aver_fast.jca_correlation(x, w, j, backend="cpp"), jca_correlation_ref(x, w, j))
    big = aver_fast.jca_correlation(x * 1e4, w, j, backend="cpp")  # saturates tanh
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, jca_correlation_ref(x * 1e4, w, j))


def test_cpp_is_deterministic():
    require_cpp()
    x, w, j, g = torch.randn(16, 16, 64), torch.randn(64, 96), torch.randn(16, 16, 96), torch.randn(16, 16, 16)
    res = []
    for _ in range(2):
        ww = w.clone().requires_grad_()
        out = aver_fast.jca_correlation(x, ww, j, backend="cpp")
        out.backward(g)
        res.append((out, ww.grad))
    assert torch.equal(res[0][0], res[1][0]) and torch.equal(res[0][1], res[1][1])


def test_direct_op_call_checks_shapes():
    require_cpp()
    with pytest.raises(RuntimeError, match="needs x \\(N, Lx, C\\)"):
        torch.ops.aver_fast.jca_correlation(torch.randn(2, 3, 4), torch.randn(5, 6), torch.randn(2, 3, 6), 1.0)


def test_op_gradient_through_its_xw_output():
    """The op also returns x @ w (kept for the backward); a gradient flowing into it is honoured."""
    require_cpp()
    x, j = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True), \
        torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)

    def f(a, b, c):
        out, xw = torch.ops.aver_fast.jca_correlation(a, b, c, 0.5)
        return out.sum() + xw.square().sum()
    assert torch.autograd.gradcheck(f, (x, w, j))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 40), st.integers(1, 48), st.integers(1, 48),
       st.floats(0.01, 2.0), st.sampled_from(DTYPES))
def test_cpp_property_random_shapes(seed, n, length, c, d, scale, dtype):
    require_cpp()
    torch.manual_seed(seed)  # inputs are a function of the example, so hypothesis can shrink failures
    run_case((n,), length, length, c, d, dtype, scale)
