import math

import pytest
import torch

from aver_fast.data import resample


@pytest.mark.parametrize("orig, new", [(48000, 44100), (16000, 44100), (22050, 44100), (44100, 8000)])
def test_sine_is_preserved_in_band(orig, new):
    t = torch.arange(orig, dtype=torch.float64) / orig
    y = resample(torch.sin(2 * math.pi * 440 * t), orig, new)
    assert y.shape[-1] == math.ceil(new * orig / orig)
    expected = torch.sin(2 * math.pi * 440 * torch.arange(y.shape[-1], dtype=torch.float64) / new)
    edge = new // 50
    assert (y[edge:-edge] - expected[edge:-edge]).abs().max() < 2e-3


def test_content_above_the_new_nyquist_is_removed():
    x = torch.sin(2 * math.pi * 30000 * torch.arange(96000) / 96000)  # 30 kHz, above 22.05 kHz
    y = resample(x, 96000, 44100)
    assert y[1000:-1000].pow(2).mean().sqrt() < 5e-3  # a naive decimation would alias it to 14.1 kHz at full scale


def test_batch_and_identity():
    x = torch.randn(2, 3, 1000)
    assert resample(x, 16000, 16000) is x
    assert resample(x, 16000, 8000).shape == (2, 3, 500)
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 8000)
