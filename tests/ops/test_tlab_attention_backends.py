"""Fast backends of tlab_attention against the reference: outputs, gradients, gradcheck, edge cases."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aver_fast
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ._parity import DTYPES, assert_parity, require_cpp

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


@pytest.mark.usefixtures("every_isa")
def test_cpp_parity_every_isa():
    for shape in [(3, 16, 256), (2, 33, 60), (1, 5, 7), (2, 70, 20), (2, 16, 16), (1, 2, 40, 33)]:
        for dtype in DTYPES:  # both associations of the product (L < D and L >= D), odd sizes, batch dims
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


OPCHECK = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.mark.parametrize("L, D", [(6, 16), (20, 8)], ids=["left", "right"])  # the two associations
def test_cpp_ops_pass_opcheck(L, D):
    """Each C++ op as torch.library sees it: schema, autograd registration, fake vs real, AOT dispatch."""
    require_cpp()
    q, k, v = (torch.randn(2, 3, L, D, requires_grad=True) for _ in range(3))
    torch.library.opcheck(torch.ops.aver_fast.tlab_attention, (q, k, v, 0.25), test_utils=OPCHECK)
    torch.library.opcheck(torch.ops.aver_fast.tlab_attention_train, (q, k, v, 0.25), test_utils=OPCHECK)
    with torch.no_grad():
        _, a_g, p, mid = torch.ops.aver_fast.tlab_attention_train(q, k, v, 0.25)
    args = (torch.randn(2, 3, L, D), q.detach(), k.detach(), v.detach(), a_g, p, mid, 0.25)
    torch.library.opcheck(torch.ops.aver_fast.tlab_attention_backward, args, test_utils=OPCHECK)


@pytest.mark.parametrize("L, D", [(6, 16), (20, 8)], ids=["left", "right"])
def test_cpp_train_op_keeps_the_attention(L, D):
    """tlab_attention_train returns A_G, A_L^T and the intermediate its backward uses."""
    require_cpp()
    q, k, v = (torch.randn(2, L, D, dtype=torch.float64) for _ in range(3))
    out, a_g, p, mid = torch.ops.aver_fast.tlab_attention_train(q, k, v, 0.3)
    scores = q @ k.mT * 0.3
    torch.testing.assert_close(a_g, scores.softmax(-1))
    torch.testing.assert_close(p, scores.softmax(-2))  # A_L^T: softmax along S's columns
    torch.testing.assert_close(mid, a_g @ p.mT if L < D else p.mT @ v)
    torch.testing.assert_close(out, tlab_attention_ref(q, k, v, 0.3))
    torch.testing.assert_close(torch.ops.aver_fast.tlab_attention(q, k, v, 0.3), out)


def test_cpp_direct_inference_op_is_differentiable():
    """Calling the inference op itself with inputs that require grad: the backward recomputes what it needs."""
    require_cpp()
    q, k, v = (torch.randn(3, 9, 5, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: torch.ops.aver_fast.tlab_attention(a, b, c, 0.4), (q, k, v))


def test_cpp_keeps_no_more_for_backward_than_the_reference():
    """With inputs that require grad, what autograd holds for the backward is at most the reference's."""
    require_cpp()
    from aver_fast.bench import saved_bytes
    for shape in [(4, 2, 16, 256), (2, 2, 128, 64)]:
        inputs = [torch.randn(shape, requires_grad=True) for _ in range(3)]
        ours = saved_bytes(lambda a, b, c: aver_fast.tlab_attention(a, b, c, backend="cpp"), inputs)
        assert ours <= saved_bytes(tlab_attention_ref, inputs), shape


def test_backward_op_refuses_saved_tensors_of_other_inputs():
    require_cpp()
    q = torch.randn(2, 6, 16)
    _, a_g, p, mid = torch.ops.aver_fast.tlab_attention_train(q, q, q, 0.25)
    with pytest.raises(RuntimeError, match="saved tensors of tlab_attention_train"):
        torch.ops.aver_fast.tlab_attention_backward(q, q, q, q, a_g, p, mid[..., :3], 0.25)
    with pytest.raises(RuntimeError, match="saved tensors of tlab_attention_train"):
        torch.ops.aver_fast.tlab_attention_backward(q, q, q, q, a_g.double(), p, mid, 0.25)


def test_direct_op_call_checks_shapes():
    require_cpp()
    with pytest.raises(RuntimeError, match="same \\(..., L, D\\) shape"):
        torch.ops.aver_fast.tlab_attention(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 3, 4), 1.0)
    with pytest.raises(RuntimeError, match="float32, float64, bfloat16 or float16"):
        torch.ops.aver_fast.tlab_attention(*(torch.ones(2, 3, 4, dtype=torch.int32) for _ in range(3)), 1.0)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.integers(1, 70), st.integers(1, 80), st.floats(0.01, 2.0),
       st.sampled_from(DTYPES))
def test_cpp_property_random_shapes(seed, n, L, D, scale, dtype):
    require_cpp()
    torch.manual_seed(seed)  # inputs are a function of the example, so hypothesis can shrink failures
    run_case((n, L, D), dtype, "cpp", scale)
