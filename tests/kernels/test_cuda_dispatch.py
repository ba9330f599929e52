"""On a GPU, the torch.ops.aver_fast ops (the C++ library's schemas) dispatch CUDA tensors to the Triton kernels.
Needs CUDA tensors, so it only runs where a GPU is present (benchmarks/gpu_suite.py runs it there)."""
import pytest
import torch

from aver_fast.ops import _ext
from aver_fast.ops.jca_correlation import jca_correlation_ref
from aver_fast.ops.log_mel import _constants, log_mel_ref, make_params, num_frames
from aver_fast.ops.tlab_attention import tlab_attention_ref

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_tlab_attention_op_on_cuda():
    assert _ext.LOADED, _ext.REASON
    for L in (16, 200):  # short and long path
        q, k, v = (torch.randn(3, L, 32, device="cuda", requires_grad=True) for _ in range(3))
        out = torch.ops.aver_fast.tlab_attention(q, k, v, 32 ** -0.5)
        out.sum().backward()
        qr, kr, vr = (t.detach().cpu().double().requires_grad_() for t in (q, k, v))
        ref = tlab_attention_ref(qr, kr, vr)
        ref.sum().backward()
        torch.testing.assert_close(out.cpu().double(), ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(q.grad.cpu().double(), qr.grad, rtol=1e-3, atol=1e-4)


def test_jca_and_log_mel_ops_on_cuda():
    x, w, j = torch.randn(2, 16, 24, device="cuda"), torch.randn(24, 40, device="cuda"), \
        torch.randn(2, 16, 40, device="cuda")
    out, xw = torch.ops.aver_fast.jca_correlation(x, w, j, 0.2)
    torch.testing.assert_close(out.cpu().double(), jca_correlation_ref(x.cpu().double(), w.cpu().double(),
                                                                       j.cpu().double(), 0.2), rtol=1e-4, atol=1e-5)
    p = make_params()
    _, window, fb = _constants(p, torch.float32, torch.device("cuda"))
    wav = torch.randn(2, 45599, device="cuda")
    db = torch.ops.aver_fast.log_mel(wav, window, fb, p.hop_length, p.center, 0, p.top_db,
                                     num_frames(wav.shape[-1], p.n_fft, p.hop_length, p.center))
    ref = log_mel_ref(wav.cpu().double())
    assert ((db.cpu().double() - ref).abs() / ref.abs().clamp(min=1)).max() < 1e-4
