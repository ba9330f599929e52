"""Every drop-in module: output shape, and gradients reaching its input and every parameter."""
import pytest
import torch

from aver_fast.nn import AVGA, JCA, TCN, TLAB, AudioResNet18, MelSpectrogram, R2Plus1D18

CASES = {
    "TCN": (lambda: TCN(6, (8, 5), kernel_size=3, dilation=2), lambda: (torch.randn(2, 9, 6),), (2, 9, 5)),
    "TLAB": (lambda: TLAB(8), lambda: (torch.randn(2, 7, 8),), (2, 7, 8)),
    "JCA": (lambda: JCA(6, 10, seq_len=5), lambda: (torch.randn(2, 5, 6), torch.randn(2, 5, 10)), (2, 5, 16)),
    "AVGA": (lambda: AVGA(8, 6, hidden=10, attn_dim=4), lambda: (torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6)),
             (2, 3, 8)),
    "R2Plus1D18": (lambda: R2Plus1D18(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
                   lambda: (torch.randn(2, 3, 4, 32, 32),), (2, 16)),
    "AudioResNet18": (lambda: AudioResNet18(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
                      lambda: (torch.randn(2, 1, 32, 20),), (2, 16)),
    "MelSpectrogram": (lambda: MelSpectrogram(sample_rate=16000, n_fft=256, win_length=200, hop_length=100,
                                              n_mels=20), lambda: (torch.randn(2, 1000),), (2, 20, 11)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shape_and_gradients(name):
    make, inputs, shape = CASES[name]
    m = make()
    xs = [x.requires_grad_() for x in inputs()]
    y = m(*xs)
    assert y.shape == shape
    y.square().mean().backward()
    for x in xs:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing
