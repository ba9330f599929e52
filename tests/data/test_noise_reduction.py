"""Spectral gating: a measurement that it helps on a noisy harmonic signal (closer to the clean spectrogram)."""
import math

import pytest
import torch

import aver_fast
from aver_fast.data import spectral_gate


def test_gating_brings_a_noisy_spectrogram_closer_to_the_clean_one():
    g = torch.Generator().manual_seed(0)
    sr, n = 16000, 32000
    t = torch.arange(n) / sr
    envelope = (torch.sin(2 * math.pi * 1.5 * t) > 0).float()  # speech-like on/off
    clean = sum(torch.sin(2 * math.pi * 200 * h * t) / h for h in range(1, 8)) * envelope * 0.3
    noisy = clean + 0.05 * torch.randn(n, generator=g)
    kw = dict(sample_rate=sr, n_fft=512, win_length=400, hop_length=160, n_mels=40, top_db=None)
    ref, db = aver_fast.log_mel(clean, **kw).clamp(min=-60), aver_fast.log_mel(noisy, **kw).clamp(min=-60)
    gated = spectral_gate(db)
    before = (db - ref).abs().mean().item()
    after = (gated - ref).abs().mean().item()
    print(f"mean |dB error| vs clean: {before:.2f} before gating, {after:.2f} after")
    assert after < 0.8 * before, (before, after)
    speech = torch.cat([envelope[::160], envelope[-1:]])[: db.shape[-1]].bool()  # frame t is centred at t * hop
    assert (gated - db)[:, speech].mean() > (gated - db)[:, ~speech].mean()  # speech is attenuated less


def test_shapes_and_bad_quantile():
    db = torch.randn(2, 3, 40, 50)
    assert spectral_gate(db).shape == db.shape
    with pytest.raises(ValueError, match="quantile"):
        spectral_gate(db, quantile=0.0)
