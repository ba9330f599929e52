import pytest
import torch
import torch.nn.functional as F

import aver_fast
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import shape_id


@pytest.mark.parametrize("shape", [(1, 4), (7, 8), (2, 3, 16, 60), (2, 2, 33, 64)], ids=shape_id)
def test_ref_equals_two_chained_sdpa(shape):
    q, k, v = (torch.randn(shape, dtype=torch.float64) for _ in range(3))
    u = F.scaled_dot_product_attention(k, q, v)
    expected = F.scaled_dot_product_attention(q, k, u)
    torch.testing.assert_close(tlab_attention_ref(q, k, v), expected, rtol=1e-12, atol=1e-12)


def test_ref_matches_explicit_equation():
    q, k, v = (torch.randn(3, 9, 5, dtype=torch.float64) for _ in range(3))
    s = 0.37
    a_g = torch.softmax(q @ k.mT * s, -1)
    a_l = torch.softmax(k @ q.mT * s, -1)
    torch.testing.assert_close(aver_fast.tlab_attention(q, k, v, scale=s), a_g @ (a_l @ v))


def test_half_inputs_are_computed_in_float32():
    q, k, v = (torch.randn(2, 8, 16) for _ in range(3))
    out = tlab_attention_ref(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert out.dtype == torch.bfloat16
    ref = tlab_attention_ref(q.bfloat16().double(), k.bfloat16().double(), v.bfloat16().double())
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("bad, match", [
    (lambda q: (q, q[..., :3], q), "k has shape"),
    (lambda q: (q, q, q[:, :5]), "v has shape"),
    (lambda q: (q[0, 0, 0], q[0, 0, 0], q[0, 0, 0]), "q must have at least 2"),
    (lambda q: (q.long(), q.long(), q.long()), "q must be a floating-point"),
    (lambda q: (q, q.double(), q), "k has dtype"),
    (lambda q: (q, "k", q), "k must be a torch.Tensor"),
])
def test_bad_inputs_name_the_argument(bad, match):
    q = torch.randn(2, 7, 8)
    with pytest.raises((TypeError, ValueError), match=match):
        aver_fast.tlab_attention(*bad(q))


def test_bad_scale_and_backend():
    q = torch.randn(2, 7, 8)
    with pytest.raises(ValueError, match="scale"):
        aver_fast.tlab_attention(q, q, q, scale=-1.0)
    with pytest.raises(ValueError, match="not a backend"):
        aver_fast.tlab_attention(q, q, q, backend="fortran")
