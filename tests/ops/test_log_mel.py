import warnings

import numpy as np
import pytest
import torch

import aver_fast
from aver_fast.ops.log_mel import mel_filterbank

from .._ids import settings_id


# ------------------------------------------------------------------ an independent float64 numpy implementation
def np_hz_to_mel(f, htk):
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0), lin)


def np_mel_to_hz(m, htk):
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * 200.0 / 3)


def np_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, slaney_norm):
    fft_f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    pts = np_mel_to_hz(np.linspace(np_hz_to_mel(fmin, htk), np_hz_to_mel(fmax, htk), n_mels + 2), htk)
    fb = np.zeros((n_mels, len(fft_f)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (fft_f - lo) / (c - lo)
        down = (hi - fft_f) / (hi - c)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
        if slaney_norm:
            fb[i] *= 2.0 / (hi - lo)
    return fb


def np_log_mel(x, sr, n_fft, win, hop, n_mels, fmin, fmax, center, pad_mode, htk, slaney_norm, top_db):
    x = np.asarray(x, dtype=np.float64)
    if center:
        x = np.pad(x, n_fft // 2, mode=pad_mode)
    n = np.arange(win)
    w = np.zeros(n_fft)
    left = (n_fft - win) // 2
    w[left:left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)
    frames = 1 + (len(x) - n_fft) // hop
    spec = np.stack([np.abs(np.fft.rfft(x[t * hop:t * hop + n_fft] * w)) ** 2 for t in range(frames)], axis=1)
    mel = np_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, slaney_norm) @ spec
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


CASES = [
    dict(sample_rate=44100, n_fft=1024, win_length=882, hop_length=441, n_mels=128, mel_scale="slaney",
         norm="slaney", top_db=80.0, center=True, pad_mode="reflect", samples=45599),
    dict(sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=40, mel_scale="htk", norm=None,
         top_db=None, center=True, pad_mode="constant", samples=4001),
    dict(sample_rate=22050, n_fft=512, win_length=333, hop_length=100, n_mels=64, mel_scale="slaney", norm=None,
         top_db=60.0, center=False, pad_mode="reflect", samples=3001, f_min=50.0, f_max=8000.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"sr{c['sample_rate']}-nfft{c['n_fft']}-{c['mel_scale']}")
def test_reference_matches_independent_numpy(case):
    case = dict(case)
    samples = case.pop("samples")
    x = torch.randn(samples, dtype=torch.float64) * torch.linspace(0.01, 1.0, samples, dtype=torch.float64)
    fmin, fmax = case.get("f_min", 0.0), case.get("f_max", case["sample_rate"] / 2)
    expected = np_log_mel(x.numpy(), case["sample_rate"], case["n_fft"], case["win_length"], case["hop_length"],
                          case["n_mels"], fmin, fmax, case["center"], case["pad_mode"], case["mel_scale"] == "htk",
                          case["norm"] == "slaney", case["top_db"])
    out = aver_fast.log_mel(x, **case)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-8)


def test_batch_dims_and_per_item_top_db():
    x = torch.randn(2, 3, 8000, dtype=torch.float64)
    x[0, 1] *= 1e-3  # a quiet item keeps its own 80 dB range
    out = aver_fast.log_mel(x, sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    assert out.shape == (2, 3, 40, 1 + 8000 // 160)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], aver_fast.log_mel(x[i, j], sample_rate=16000, n_fft=512,
                                                                    win_length=400, hop_length=160, n_mels=40))
    ranges = out.amax(dim=(-2, -1)) - out.amin(dim=(-2, -1))
    assert (ranges <= 80.0 + 1e-9).all()


def test_filterbank_slaney_has_no_empty_filters_and_htk_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb = mel_filterbank(44100, 1024, 128, 0.0, 22050.0, "slaney", "slaney")
    assert fb.shape == (513, 128) and (fb.amax(0) > 0).all()
    with pytest.warns(UserWarning, match="all-zero filters"):
        mel_filterbank(44100, 1024, 128, 0.0, 22050.0, "htk", None)


def test_module_matches_function():
    m = aver_fast.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                 mel_scale="slaney", norm="slaney", top_db=80.0)
    x = torch.randn(2, 4000)
    torch.testing.assert_close(m(x), aver_fast.log_mel(x, sample_rate=16000, n_fft=512, win_length=400,
                                                       hop_length=160, n_mels=40))


def test_half_precision_input():
    x = torch.randn(2, 8000)
    out = aver_fast.log_mel(x.half(), sample_rate=16000, n_fft=512, hop_length=160, n_mels=40, win_length=400)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_fft=0), "n_fft must be a positive integer"),
    (dict(win_length=2048), "win_length=2048 must be <= n_fft"),
    (dict(hop_length=-1), "hop_length"),
    (dict(f_max=30000.0), "f_max"),
    (dict(mel_scale="bark"), "mel_scale"),
    (dict(norm="l2"), "norm"),
    (dict(pad_mode="wrap"), "pad_mode"),
    (dict(top_db=-1.0), "top_db"),
], ids=lambda v: settings_id(v) if isinstance(v, dict) else "")
def test_bad_settings_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aver_fast.log_mel(torch.randn(8000), **kwargs)


def test_bad_waveform():
    with pytest.raises(ValueError, match="waveform has 100 samples"):
        aver_fast.log_mel(torch.randn(100))
    with pytest.raises(TypeError, match="waveform must be a floating-point"):
        aver_fast.log_mel(torch.zeros(8000, dtype=torch.int16))
    with pytest.raises(ValueError, match="center=False needs"):
        aver_fast.log_mel(torch.randn(1000), center=False)
