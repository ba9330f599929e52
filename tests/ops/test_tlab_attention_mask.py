"""tlab_attention with a padding mask, every backend: the real rows equal the op on the sequence without the padded
steps (outputs and gradients), padded rows are 0, padded inputs get exactly no gradient and whatever they hold (NaN
included) never reaches a real step. The reference is the oracle; Triton runs in its interpreter on CPU (float32)."""
import pytest
import torch

import aver_fast
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ._parity import assert_parity, require_cpp

# (L, D, lengths per item): odd sizes, both associations of the C++ product (L < D and L >= D), an item with one
# real step, a full item, an item with none
CASES = [(9, 16, (9, 5, 1)), (33, 8, (33, 17, 2)), (7, 60, (0, 7, 3)), (40, 33, (40, 39, 20))]
BACKENDS = [("reference", torch.float64), ("cpp", torch.float64), ("cpp", torch.float32),
            ("cpp", torch.bfloat16), ("triton", torch.float32)]


def masks(lengths, L, holes):
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    if holes:  # real steps need not come first: any pattern is left out the same way
        mask = mask[:, torch.randperm(L)]
    return mask


@pytest.mark.parametrize("holes", [False, True], ids=["trailing", "holes"])
@pytest.mark.parametrize(("backend", "dtype"), BACKENDS, ids=[f"{b}-{dtype_id(d)}" for b, d in BACKENDS])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[0]}xD{c[1]}")
def test_real_rows_are_the_op_on_the_real_steps(case, backend, dtype, holes):
    require_cpp()
    L, D, lengths = case
    torch.manual_seed(0)
    q, k, v, g = (torch.randn(len(lengths), 2, L, D, dtype=torch.float64) for _ in range(4))
    mask = masks(lengths, L, holes)
    for t in (q, k, v):  # what the padded steps hold must not matter
        t.masked_fill_(~mask[:, None, :, None], float("nan"))
    leaves = [t.to(dtype).clone().requires_grad_() for t in (q, k, v)]
    out = aver_fast.tlab_attention(*leaves, backend=backend, mask=mask[:, None, :])
    out.backward(g.to(dtype))
    assert out.dtype == dtype and not out.isnan().any()
    for b, m in enumerate(mask):
        assert (out[b][:, ~m] == 0).all(), "padded rows are 0"
        for t in leaves:
            assert (t.grad[b][:, ~m] == 0).all(), "no gradient reaches a padded input"
        if not m.any():
            continue
        sub64 = [t[b:b + 1, :, m].clone().requires_grad_() for t in (q, k, v)]  # the unpadded sequence
        ref = tlab_attention_ref(*sub64)
        ref.backward(g[b:b + 1, :, m])
        sub = [t[b:b + 1, :, m].to(dtype).requires_grad_() for t in (q, k, v)]
        same = tlab_attention_ref(*sub)
        same.backward(g[b:b + 1, :, m].to(dtype))
        assert_parity("out", out[b:b + 1, :, m].detach(), ref.detach(), same.detach())
        for name, t, r, s in zip("qkv", leaves, sub64, sub, strict=True):
            assert_parity(f"d{name}", t.grad[b:b + 1, :, m], r.grad, s.grad)


def test_gradcheck_and_gradgradcheck_with_a_mask():
    require_cpp()
    mask = torch.tensor([[True, True, False, True, False], [True, False, False, False, False]])
    for backend in ("reference", "cpp"):
        q, k, v = (torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True) for _ in range(3))

        def f(a, b, c, backend=backend):
            return aver_fast.tlab_attention(a, b, c, backend=backend, mask=mask)
        assert torch.autograd.gradcheck(f, (q, k, v))
        assert torch.autograd.gradgradcheck(f, (q, k, v))


def test_an_all_true_mask_changes_nothing_and_broadcasting_works():
    require_cpp()
    q, k, v = (torch.randn(3, 2, 8, 16, dtype=torch.float64) for _ in range(3))
    for backend in ("reference", "cpp"):
        plain = aver_fast.tlab_attention(q, k, v, backend=backend)
        torch.testing.assert_close(aver_fast.tlab_attention(q, k, v, backend=backend,
                                                            mask=torch.ones(3, 1, 8, dtype=torch.bool)), plain)
        one = torch.tensor([True] * 5 + [False] * 3)  # (L,) for every item and head
        got = aver_fast.tlab_attention(q, k, v, backend=backend, mask=one)
        torch.testing.assert_close(got[..., :5, :], aver_fast.tlab_attention(q[..., :5, :], k[..., :5, :],
                                                                             v[..., :5, :], backend=backend))


def test_huge_scores_stay_masked():
    """The masking margin follows the inputs' magnitude: scores of 1e6 between real steps do not let a padded
    step back in."""
    require_cpp()
    q, k, v = (torch.randn(1, 6, 4, dtype=torch.float64) * 1e3 for _ in range(3))
    mask = torch.tensor([[True, True, True, False, False, True]])
    want = tlab_attention_ref(q, k, v, mask=mask)
    torch.testing.assert_close(aver_fast.tlab_attention(q, k, v, backend="cpp", mask=mask), want)


@pytest.mark.parametrize("mask, error, match", [
    (torch.ones(2, 8), TypeError, "mask must be a bool tensor"),
    ([True] * 8, TypeError, "mask must be a bool torch.Tensor"),
    (torch.ones(3, 8, dtype=torch.bool), ValueError, r"mask has shape \(3, 8\), which does not broadcast"),
    (torch.ones(2, 7, dtype=torch.bool), ValueError, "does not broadcast"),
])
def test_bad_masks_are_named(mask, error, match):
    q = torch.randn(2, 2, 8, 4)
    with pytest.raises(error, match=match):
        aver_fast.tlab_attention(q, q, q, mask=mask)


def test_a_fused_backend_that_cannot_take_the_masked_shape_is_named():
    """The fused route runs on (..., L, D + 2) in float32: where that exceeds a kernel (Triton's long path keeps
    D <= 256), asking for it says so; automatic selection runs the reference instead."""
    q = torch.randn(1, 50, 256, dtype=torch.float16)
    mask = torch.arange(50) < 40
    with pytest.raises(RuntimeError, match=r"backend 'triton' was requested but cannot run this masked call: .*D=258"):
        aver_fast.tlab_attention(q, q, q, backend="triton", mask=mask)
