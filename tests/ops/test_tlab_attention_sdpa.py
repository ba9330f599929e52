"""tlab_attention's ``sdpa`` backend (two ``scaled_dot_product_attention`` calls): parity with the float64 reference
over odd shapes and every float dtype, masks, and where it may run: calls that need no gradient, outside torch.func
transforms, automatically on CUDA only."""
import pytest
import torch

import aver_fast
from aver_fast.ops import _registry
from aver_fast.ops.tlab_attention import tlab_attention_ref

from .._ids import dtype_id
from ._parity import assert_parity

# (batch dims, L, D): one step, odd L and D, L < D and L > D, no batch dims, several batch dims
SHAPES = [((1,), 1, 1), ((3, 2), 17, 40), ((2,), 33, 7), ((), 64, 96), ((2, 1, 3), 5, 130)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{'x'.join(map(str, s[0])) or 'none'}-L{s[1]}-D{s[2]}")
@pytest.mark.parametrize("scale", [None, 0.3], ids=["default-scale", "scale0.3"])
def test_matches_the_reference(shape, dtype, scale):
    batch, L, D = shape
    q, k, v = (torch.randn(*batch, L, D, dtype=torch.float64) for _ in range(3))
    with torch.inference_mode():
        out = aver_fast.tlab_attention(*(t.to(dtype) for t in (q, k, v)), scale=scale, backend="sdpa")
        ref64 = tlab_attention_ref(q, k, v, scale)
        ref_same = tlab_attention_ref(*(t.to(dtype) for t in (q, k, v)), scale)
    assert out.dtype == dtype
    assert_parity(f"sdpa {shape} {dtype}", out, ref64, ref_same)


def test_masked_call_matches_the_reference():
    q, k, v = (torch.randn(3, 2, 11, 24) for _ in range(3))
    mask = torch.tensor([[True] * 11, [True] * 6 + [False] * 5, [False] * 11])[:, None, :]
    q[1, :, 6:] = float("nan")  # what padded steps hold never reaches a real one
    v[2] = float("nan")
    with torch.no_grad():
        out = aver_fast.tlab_attention(q, k, v, backend="sdpa", mask=mask)
        ref = tlab_attention_ref(q.double(), k.double(), v.double(), mask=mask)
    assert_parity("sdpa masked", out[0], ref[0], ref[0].float())
    torch.testing.assert_close(out[1, :, :6], ref[1, :, :6].float(), rtol=1e-5, atol=1e-5)
    assert (out[1, :, 6:] == 0).all() and (out[2] == 0).all()


def test_refuses_calls_that_need_a_gradient_and_transforms():
    q = torch.randn(2, 5, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="backend 'sdpa' was requested.*need no gradient"):
        aver_fast.tlab_attention(q, q, q, backend="sdpa")
    with torch.no_grad():  # the same tensors, nothing to differentiate: it runs
        aver_fast.tlab_attention(q, q, q, backend="sdpa")
    with pytest.raises(RuntimeError, match="outside torch.func transforms"):
        torch.func.vmap(lambda t: aver_fast.tlab_attention(t, t, t, backend="sdpa"))(q.detach())


def test_chosen_automatically_on_cuda_only(monkeypatch):
    names = lambda device: [b.name for b in _registry._automatic("tlab_attention", torch.device(device),  # noqa: E731
                                                                 torch.float32)]
    assert "sdpa" not in names("cpu")
    assert names("cuda")[-2:] == ["sdpa", "reference"]  # Triton ahead of it where it can run
    monkeypatch.setenv("AVER_FAST_AUTOTUNE", "1")  # measured everywhere: still never picked on CPU
    q = torch.randn(1, 1, 256, 128)
    with torch.no_grad():
        assert _registry.select("tlab_attention", q.device, q.dtype, None, (q, q, q, 0.1)).name != "sdpa"


def test_other_ops_have_no_sdpa_backend_and_say_so(monkeypatch):
    monkeypatch.setenv("AVER_FAST_BACKEND", "sdpa")
    x, w, j = torch.randn(2, 4, 6), torch.randn(6, 10), torch.randn(2, 4, 10)
    with pytest.raises(RuntimeError, match="backend 'sdpa' was requested.*not implemented for this op"):
        aver_fast.jca_correlation(x, w, j)


def test_torch_compile_traces_the_choice_in_one_graph():
    q = torch.randn(2, 3, 9, 16, device="meta")  # not CPU: the device type the compiled call is accepted on
    f = torch.compile(lambda a: aver_fast.tlab_attention(a, a, a, backend="sdpa") * 2, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert f(q).shape == q.shape


def test_compiles_on_cpu():
    q, k, v = (torch.randn(2, 3, 9, 16) for _ in range(3))
    f = torch.compile(lambda a, b, c: aver_fast.tlab_attention(a, b, c, backend="sdpa") * 2, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(f(q, k, v), 2 * tlab_attention_ref(q, k, v), rtol=1e-5, atol=1e-5)
