"""Triton JCA correlation (kernels/jca_correlation.py) against the float64 reference, fwd and bwd, one or two
modalities per launch. (No float64 gradcheck: Triton has no float64 tl.dot; see the C++ backend's.)"""
import pytest
import torch

import aver_fast
from aver_fast.kernels import jca_correlation as kernel
from aver_fast.ops.jca_correlation import jca_correlation_ref

from .._ids import dtype_id
from ..ops._parity import assert_parity
from ._device import DEVICE, TRITON_DTYPES

# (G, N, Lx, Lj, C, D)
SHAPES = [(1, 2, 16, 16, 24, 40), (2, 3, 7, 5, 9, 33), (1, 1, 1, 1, 3, 2), (2, 2, 70, 33, 20, 70)]


@pytest.mark.parametrize("dtype", TRITON_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "G{}-N{}-Lx{}-Lj{}-C{}-D{}".format(*s))
def test_kernel_parity(shape, dtype):
    G, N, Lx, Lj, C, D = shape
    x, w, j = torch.randn(G, N, Lx, C, dtype=torch.float64), torch.randn(G, C, D, dtype=torch.float64) / C ** 0.5, \
        torch.randn(N, Lj, D, dtype=torch.float64)
    g = torch.randn(G, N, Lx, Lj, dtype=torch.float64)
    s = D ** -0.5
    grads = {}
    outs = {}
    for key, dt in (("64", torch.float64), ("same", dtype)):
        leaves = [t.to(dt).clone().requires_grad_() for t in (x, w, j)]
        outs[key] = jca_correlation_ref(leaves[0], leaves[1].unsqueeze(1), leaves[2].unsqueeze(0), s)
        outs[key].backward(g.to(dt))
        grads[key] = [t.grad for t in leaves]
    args = [t.to(DEVICE, dtype).contiguous() for t in (x, w, j)]
    out = kernel.forward(*args, s)
    got = kernel.backward(g.to(DEVICE, dtype), out, *args, s)
    assert_parity("out", out.cpu(), outs["64"], outs["same"])
    for i, name in enumerate(("dx", "dw", "dj")):
        assert_parity(name, got[i].cpu(), grads["64"][i], grads["same"][i])


def test_public_api_and_pair_launch_match_two_single_calls():
    a, v = (torch.randn(3, 16, 12, device=DEVICE, requires_grad=True) for _ in range(2))
    w_a, w_v = (torch.randn(12, 24, device=DEVICE, requires_grad=True) for _ in range(2))
    j = torch.randn(3, 16, 24, device=DEVICE, requires_grad=True)
    c_a, c_v = aver_fast.ops.jca_correlation_pair(a, w_a, v, w_v, j, backend="triton")
    (c_a.sum() + c_v.square().sum()).backward()
    pair_grads = [t.grad.clone() for t in (a, w_a, v, w_v, j)]
    for t in (a, w_a, v, w_v, j):
        t.grad = None
    s_a = aver_fast.jca_correlation(a, w_a, j, backend="triton")
    s_v = aver_fast.jca_correlation(v, w_v, j, backend="triton")
    (s_a.sum() + s_v.square().sum()).backward()
    torch.testing.assert_close(c_a, s_a)
    torch.testing.assert_close(c_v, s_v)
    for got, t in zip(pair_grads, (a, w_a, v, w_v, j), strict=True):
        torch.testing.assert_close(got, t.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_a.cpu().double(), jca_correlation_ref(a.detach().cpu().double(),
                                                                       w_a.detach().cpu().double(),
                                                                       j.detach().cpu().double()),
                               rtol=1e-4, atol=1e-5)


def test_saturated_and_tiny_correlations():
    x = torch.randn(1, 2, 8, 4, device=DEVICE)
    w = torch.randn(1, 4, 6, device=DEVICE)
    j = torch.randn(2, 8, 6, device=DEVICE)
    for scale in (1e4, 1e-6):  # tanh saturates / stays in its linear (Taylor) range
        out = kernel.forward(x, w, j, scale).cpu().double()
        ref = jca_correlation_ref(x.cpu().double(), w.cpu().double().unsqueeze(1), j.cpu().double().unsqueeze(0), scale)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_deterministic():
    x, w, j = torch.randn(1, 4, 16, 32, device=DEVICE), torch.randn(1, 32, 48, device=DEVICE), \
        torch.randn(4, 16, 48, device=DEVICE)
    g = torch.randn(1, 4, 16, 16, device=DEVICE)
    o1, o2 = kernel.forward(x, w, j, 0.1), kernel.forward(x, w, j, 0.1)
    assert torch.equal(o1, o2)
    assert all(torch.equal(a, b) for a, b in zip(kernel.backward(g, o1, x, w, j, 0.1),
                                                 kernel.backward(g, o2, x, w, j, 0.1), strict=True))
