"""float16/bfloat16 on the CPU: the C++ kernels run them (computed in float32, as the references), so CPU autocast
never drops the fused ops to the reference in silence. Outputs and gradients against the reference per dtype."""
import pytest
import torch

import aver_fast
from aver_fast.ops import _registry

from .._ids import dtype_id
from ._parity import require_cpp

HALF = [torch.bfloat16, torch.float16]
TOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3}  # a few units in the last place of the dtype, outputs of O(1)


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
@pytest.mark.parametrize("shape", [(2, 7, 16), (3, 2, 33, 24)], ids=["odd", "batched"])
def test_tlab_attention(dtype, shape):
    require_cpp()
    qkv = [torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3)]
    ref = [t.detach().clone().requires_grad_() for t in qkv]
    out = aver_fast.tlab_attention(*qkv, backend="cpp")
    want = aver_fast.tlab_attention(*ref, backend="reference")
    _close(out, want, dtype)
    g = torch.randn_like(out)
    out.backward(g)
    want.backward(g)
    for a, b in zip(qkv, ref, strict=True):
        _close(a.grad, b.grad, dtype)


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_jca_correlation(dtype):
    require_cpp()
    xwj = [torch.randn(2, 9, 12, dtype=dtype), torch.randn(12, 20, dtype=dtype) * 0.3,
           torch.randn(2, 9, 20, dtype=dtype)]
    xwj = [t.requires_grad_() for t in xwj]
    ref = [t.detach().clone().requires_grad_() for t in xwj]
    out = aver_fast.jca_correlation(*xwj, backend="cpp")
    want = aver_fast.jca_correlation(*ref, backend="reference")
    _close(out, want, dtype)
    out.sum().backward()
    want.sum().backward()
    for a, b in zip(xwj, ref, strict=True):
        _close(a.grad, b.grad, dtype)


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_log_mel(dtype):
    require_cpp()
    wave = (torch.randn(2, 4001) * 0.1).to(dtype)
    kw = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    out = aver_fast.log_mel(wave, backend="cpp", **kw)
    want = aver_fast.log_mel(wave, backend="reference", **kw)
    assert out.dtype == want.dtype == dtype
    torch.testing.assert_close(out.float(), want.float(), atol=0.5, rtol=0)  # dB of O(-100): half keeps ~3 digits


def test_autocast_runs_the_fused_kernels():
    """Was: under CPU autocast TLAB and JCA got bfloat16 inputs and went to the reference, silently. JCA runs its
    reference on CPU whatever the dtype (GEMM-bound: nothing to gain), as ``backends()`` says."""
    require_cpp()
    ran = []
    q = torch.randn(2, 16, 32)
    w = torch.randn(32, 48)
    j = torch.randn(2, 16, 48)
    with _registry.observe(lambda op, backend, _s: ran.append((op, backend))), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        aver_fast.tlab_attention(q, q, q)
        aver_fast.jca_correlation(q, w, j)
    assert ran == [("tlab_attention", "cpp"), ("jca_correlation", "reference")]
    assert aver_fast.backends(dtype=torch.bfloat16)["jca_correlation"]["cpu"]["requested_only"]["cpp"]


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_tlab_attention_converts_inside_the_kernel(dtype):
    """Was: float16/bfloat16 were cast to float32 copies in Python, the kernel run, the result cast back (three
    extra passes over the inputs and one over the output). Now the kernel takes them as they are."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Calls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    require_cpp()
    q, k, v = (torch.randn(2, 2, 16, 64, dtype=dtype) for _ in range(3))
    with Calls() as calls:
        out = aver_fast.tlab_attention(q, k, v, backend="cpp")
    assert calls.ops == ["aver_fast.tlab_attention"] and out.dtype == dtype
    report = aver_fast.backends(dtype=dtype)
    assert "inside the C++ kernel" in report["tlab_attention"]["cpu"]["precision"]["cpp"]
    assert "cast to float32" in report["log_mel"]["cpu"]["precision"]["cpp"]
    assert aver_fast.backends()["tlab_attention"]["cpu"]["precision"] == {}  # float32: nothing to say


@pytest.mark.parametrize("dtype", HALF, ids=dtype_id)
def test_tlab_attention_half_ops_pass_opcheck(dtype):
    """The kept A_G, A_Lᵀ and intermediate are float32 for half inputs, in the fake kernel as in the real one."""
    require_cpp()
    utils = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    for L, D in ((6, 16), (20, 8)):
        q, k, v = (torch.randn(2, L, D, dtype=dtype, requires_grad=True) for _ in range(3))
        torch.library.opcheck(torch.ops.aver_fast.tlab_attention_train, (q, k, v, 0.25), test_utils=utils)
        _, a_g, p, mid = torch.ops.aver_fast.tlab_attention_train(q.detach(), k.detach(), v.detach(), 0.25)
        assert a_g.dtype == p.dtype == mid.dtype == torch.float32


@pytest.mark.parametrize("shape", [(2, 16, 256), (1, 2, 9, 130), (3, 40, 160)], ids=["paper", "odd", "long"])
def test_tlab_attention_bfloat16_native_and_forced_float32_paths(shape, monkeypatch):
    """bfloat16 Q Kᵀ through AVX512-BF16 (where the CPU has it) and the forced "no native bfloat16" path
    (AVER_FAST_CPU_LOW_PRECISION=0, any CPU) both match the reference, outputs and gradients."""
    require_cpp()
    monkeypatch.setenv("AVER_FAST_CPU_LOW_PRECISION", "0")
    assert not aver_fast.ops._ext.cpu_native_bf16()
    assert "no native products" in aver_fast.backends(dtype=torch.bfloat16)["tlab_attention"]["cpu"]["precision"][
        "cpp"]
    qkv = [torch.randn(shape, dtype=torch.bfloat16) for _ in range(3)]
    want = aver_fast.tlab_attention(*qkv, backend="reference")
    forced = aver_fast.tlab_attention(*qkv, backend="cpp")
    _close(forced, want, torch.bfloat16)
    monkeypatch.delenv("AVER_FAST_CPU_LOW_PRECISION")
    if not aver_fast.ops._ext.cpu_native_bf16():
        pytest.skip("this CPU (or the kernels' ISA in use) has no native bfloat16 products; the forced path above ran")
    assert "natively" in aver_fast.backends(dtype=torch.bfloat16)["tlab_attention"]["cpu"]["precision"]["cpp"]
    native = aver_fast.tlab_attention(*qkv, backend="cpp")
    _close(native, want, torch.bfloat16)
    assert (native.float() - forced.float()).abs().max() <= 2 * TOL[torch.bfloat16]
    leaves = [t.clone().requires_grad_() for t in qkv]  # the training forward keeps the native path's attention
    ref = [t.clone().requires_grad_() for t in qkv]
    g = torch.randn(shape, dtype=torch.bfloat16)
    aver_fast.tlab_attention(*leaves, backend="cpp").backward(g)
    aver_fast.tlab_attention(*ref, backend="reference").backward(g)
    for a, b in zip(leaves, ref, strict=True):
        _close(a.grad, b.grad, torch.bfloat16)
