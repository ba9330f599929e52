"""Each Triton op as torch.library sees it (``torch.library.opcheck``: schema, autograd registration, the fake
kernel against the real one, AOT dispatch), on CPU tensors in Triton's interpreter here, on the GPU where there is
one. The fake kernels run only under torch.compile of the Triton backend, which is what a GPU user does: without
this test CI would never execute them."""
import pytest
import torch

import aver_fast  # noqa: F401  (registers the ops)
from aver_fast.ops.log_mel import PAD_MODES, _constants, make_params, num_frames

from ._device import DEVICE

UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


def _rand(*shape, grad=False):
    return torch.randn(*shape, device=DEVICE, dtype=torch.float32, requires_grad=grad)


@pytest.mark.parametrize("L", [8, 40], ids=["short", "long"])
def test_tlab_attention_ops(L):
    q, k, v = (_rand(2, L, 16, grad=True) for _ in range(3))
    torch.library.opcheck(torch.ops.aver_fast.tlab_attention_triton, (q, k, v, 0.25), test_utils=UTILS)
    with torch.no_grad():
        saved = torch.ops.aver_fast.tlab_attention_triton(q, k, v, 0.25)
    args = (_rand(2, L, 16), q.detach(), k.detach(), v.detach(), *saved, 0.25)
    torch.library.opcheck(torch.ops.aver_fast.tlab_attention_triton_backward, args, test_utils=UTILS)


def test_jca_correlation_ops():
    x, w, j = _rand(2, 3, 8, 12, grad=True), _rand(2, 12, 16, grad=True), _rand(3, 8, 16, grad=True)
    torch.library.opcheck(torch.ops.aver_fast.jca_correlation_triton, (x, w, j, 0.25), test_utils=UTILS)
    with torch.no_grad():
        out = torch.ops.aver_fast.jca_correlation_triton(x, w, j, 0.25)
    args = (_rand(*out.shape), out, x.detach(), w.detach(), j.detach(), 0.25)
    torch.library.opcheck(torch.ops.aver_fast.jca_correlation_triton_backward, args, test_utils=UTILS)


def test_log_mel_op():
    p = make_params(sample_rate=16000, n_fft=256, win_length=200, hop_length=80, n_mels=20)
    _, _, fb, (cos, sin, n_start, n_end) = _constants(p, torch.float32, torch.device(DEVICE), dft=True)
    wave = _rand(2, 1000)
    frames = num_frames(1000, p.n_fft, p.hop_length, p.center)
    args = (wave, cos, sin, n_start, n_end, fb, p.hop_length, p.center, PAD_MODES.index(p.pad_mode), p.top_db, frames)
    torch.library.opcheck(torch.ops.aver_fast.log_mel_triton, args, test_utils=UTILS)
