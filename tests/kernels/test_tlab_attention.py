"""Triton TLAB attention (kernels/tlab_attention.py) against the float64 reference, both paths, fwd and bwd.

No float64 gradcheck here: Triton has no float64 tl.dot; the C++ backend's gradcheck covers the equations, these
tests cover the kernels' arithmetic per dtype (see tests/ops/_parity.py for the tolerances)."""
import pytest
import torch

import aver_fast
from aver_fast.kernels import tlab_attention as kernel
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ..ops._parity import assert_parity
from ._device import DEVICE, TRITON_DTYPES

SHAPES = [(2, 7, 20), (11, 16, 64), (5, 33, 40), (2, 1, 8), (1, 17, 130)]  # 11 and 5: a partial last program


def check(shape, dtype, short, scale=None):
    q, k, v, g = (torch.randn(shape, dtype=torch.float64) for _ in range(4))
    s = scale or shape[-1] ** -0.5
    leaves64 = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = tlab_attention_ref(*leaves64, s)
    ref.backward(g)
    leaves = [t.to(dtype).clone().requires_grad_() for t in (q, k, v)]
    same = tlab_attention_ref(*leaves, s)
    same.backward(g.to(dtype))
    args = [t.to(DEVICE, dtype).contiguous() for t in (q, k, v)]
    out, u, lse_u, lse_o = kernel.forward(*args, s, short=short)
    grads = kernel.backward(g.to(DEVICE, dtype), *args, out, u, lse_u, lse_o, s)
    assert (u.numel() == 0) == short
    assert_parity("out", out.cpu(), ref, same)
    for name, got, l64, ls in zip(("dq", "dk", "dv"), grads, leaves64, leaves, strict=True):
        assert_parity(name, got.cpu(), l64.grad, ls.grad)


@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("short", [True, False], ids=["short", "long"])
def test_kernel_parity(shape, dtype, short):
    check(shape, dtype, short)


def test_long_path_with_several_blocks_and_masked_tail():
    check((1, 130, 16), torch.float32, short=False, scale=0.7)


def test_public_api_batch_dims_and_gradients():
    q, k, v = (torch.randn(2, 3, 9, 24, device=DEVICE, requires_grad=True) for _ in range(3))
    out = aver_fast.tlab_attention(q, k, v, backend="triton")
    out.square().sum().backward()
    q2, k2, v2 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = tlab_attention_ref(q2, k2, v2)
    ref.square().sum().backward()
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-4)


def test_deterministic():
    args = [torch.randn(4, 20, 32, device=DEVICE) for _ in range(3)]
    g = torch.randn(4, 20, 32, device=DEVICE)
    for short in (True, False):
        a = kernel.forward(*args, 0.2, short=short)
        b = kernel.forward(*args, 0.2, short=short)
        assert torch.equal(a[0], b[0])
        assert all(torch.equal(x, y) for x, y in zip(kernel.backward(g, *args, *a, 0.2),
                                                     kernel.backward(g, *args, *b, 0.2), strict=True))


def test_large_logits_are_finite():
    q, k = (torch.randn(2, 12, 16, device=DEVICE) * 100 for _ in range(2))  # logits ~ 1e4
    v = torch.randn(2, 12, 16, device=DEVICE)
    for short in (True, False):
        out = kernel.forward(q, k, v, 0.25, short=short)[0]
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.cpu().double(), tlab_attention_ref(q.cpu().double(), k.cpu().double(),
                                                                          v.cpu().double(), 0.25),
                                   rtol=1e-4, atol=1e-3)


def test_long_path_rejects_wide_heads():
    q = torch.randn(1, 3, 300, device=DEVICE)
    with pytest.raises(ValueError, match="D <= 256"):
        kernel.forward(q, q, q, 0.1, short=False)


def test_compiles_fullgraph_with_the_triton_backend(monkeypatch):
    monkeypatch.setenv("AVER_FAST_BACKEND", "triton")
    torch._dynamo.reset()
    q, k, v = (torch.randn(2, 8, 16, device=DEVICE) for _ in range(3))
    f = torch.compile(lambda a, b, c: aver_fast.tlab_attention(a, b, c) * 2, fullgraph=True)
    torch.testing.assert_close(f(q, k, v), 2 * tlab_attention_ref(q, k, v), rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
