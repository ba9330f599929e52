"""The whole model gives the same outputs and gradients whichever backend runs the ops."""
import pytest
import torch

from aver_fast import AVER, AVERConfig

from .._ids import dtype_id
from ..ops._parity import require_cpp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_aver_fusion_cpp_matches_reference(dtype, monkeypatch):
    require_cpp()
    c = AVERConfig.tiny(dropout=0.0)
    model = AVER(c).to(dtype)
    v = torch.randn(3, c.seq_len, 4, c.video_dim, dtype=dtype)
    a = torch.randn(3, c.seq_len, c.audio_dim, dtype=dtype)
    results = {}
    for backend in ("reference", "cpp"):
        monkeypatch.setenv("AVER_FAST_BACKEND", backend)
        model.zero_grad()
        out = model.forward_features(v, a)
        out.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[backend] = (out.detach(), grads)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(results["cpp"][0], results["reference"][0], **tol)
    assert results["cpp"][1].keys() == results["reference"][1].keys()
    for name, g in results["reference"][1].items():
        torch.testing.assert_close(results["cpp"][1][name], g, **tol, msg=name)
