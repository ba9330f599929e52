"""Fast backends of tlab_attention against the reference: outputs, gradients, gradcheck, edge cases."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aver_fast
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ._parity import DTYPES, assert_parity, cpu_isas, require_cpp

LS = [1, 7, 16, 33, 128, 257]
DS = [8, 60, 64, 256]
SHAPES = [(2, n, d) for n in LS for d in DS] + [(7, 60), (33, 8)] + [(2, 3, 16, 64), (1, 2, 1, 8)]


def run_case(shape, dtype, backend, scale=None, make=torch.randn):
    q, k, v, g = (make(shape, dtype=torch.float64) for _ in range(4))
    q64, k64, v64 = (t.clone().requires_grad_() for t in (q, k, v))
    ref = tlab_attention_ref(q64, k64, v64, scale)
    ref.backward(g)
    qs, ks, vs = (t.to(dtype).clone().requires_grad_() for t in (q, k, v))
    ref_same = tlab_attention_ref(qs, ks, vs, scale)
    ref_same.backward(g.to(dtype))
    qf, kf, vf = (t.to(dtype).clone().requires_grad_() for t in (q, k, v))
    out = aver_fast.tlab_attention(qf, kf, vf, scale, backend=backend)
    out.backward(g.to(dtype))
    assert out.dtype == dtype
    assert_parity("out", out, ref, ref_same)
    for name, a, b, c in (("dq", qf, q64, qs), ("dk", kf, k64, ks), ("dv", vf, v64, vs)):
        assert_parity(name, a.grad, b.grad, c.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpp_parity(shape, dtype):
    require_cpp()
    run_case(shape, dtype, "cpp")


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.usefixtures("restore_isa")
def test_cpp_parity_every_isa(isa):
    if isa not in cpu_isas():
        pytest.skip(f"this CPU cannot run {isa}")  # the other ISAs of this CPU still run
    aver_fast.ops._ext.set_cpu_isa(isa)
    for shape in [(3, 16, 256), (2, 33, 60), (1, 5, 7)]:
        for dtype in DTYPES:
            run_case(shape, dtype, "cpp")


def test_cpp_gradcheck_float64():
    require_cpp()
    q, k, v = (torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: aver_fast.tlab_attention(a, b, c, backend="cpp"), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: aver_fast.tlab_attention(a, b, c, 0.3, backend="cpp"),
                                    (q, k, v))


def test_cpp_non_contiguous_inputs():
    require_cpp()
    base = torch.randn(3, 2, 64, 17, dtype=torch.float64)
    q, k, v = base[:, 0].mT, base[:, 1].mT, (base[:, 0] * 2).mT  # (3, 17, 64) non-contiguous views
    assert not q.is_contiguous()
    torch.testing.assert_close(aver_fast.tlab_attention(q, k, v, backend="cpp"), tlab_attention_ref(q, k, v))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_cpp_large_logits_are_finite_and_match(dtype):
    require_cpp()
    q, k = (torch.randn(2, 9, 16, dtype=torch.float64) * 1e2 for _ in range(2))  # logits ~ 1e4
    v = torch.randn(2, 9, 16, dtype=torch.float64)
    out = aver_fast.tlab_attention(q.to(dtype), k.to(dtype), v.to(dtype), backend="cpp")
    assert torch.isfinite(out).all()
    ref = tlab_attention_ref(q.to(dtype), k.to(dtype), v.to(dtype))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-3 if dtype == torch.float32 else 1e-9)


def test_cpp_is_deterministic():
    require_cpp()
    q, k, v, g = (torch.randn(8, 2, 33, 64) for _ in range(4))
    outs, grads = [], []
    for _ in range(2):
        qq = q.clone().requires_grad_()
        o = aver_fast.tlab_attention(qq, k, v, backend="cpp")
        o.backward(g)
        outs.append(o)
        grads.append(qq.grad)
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])


def test_direct_op_call_checks_shapes():
    require_cpp()
    with pytest.raises(RuntimeError, match="same \\(N, L, D\\) shape"):
        torch.ops.aver_fast.tlab_attention(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 4), 1.0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.aver_fast.tlab_attention(*(torch.randn(2, 3, 4).half() for _ in range(3)), 1.0)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 70), st.integers(1, 80), st.floats(0.01, 2.0),
       st.sampled_from(DTYPES))
def test_cpp_property_random_shapes(seed, n, L, D, scale, dtype):
    require_cpp()
    torch.manual_seed(seed)  # inputs are a function of the example, so hypothesis can shrink failures
    run_case((n, L, D), dtype, "cpp", scale)
