"""MelSpectrogram follows torchaudio's conventions (derived window and hop, power or magnitude, dB or not, top_db per
item over its channels, window and filterbank as non-persistent buffers) on every backend."""
import pytest
import torch

from aver_fast import MelSpectrogram
from aver_fast.ops.log_mel import mel_filterbank

from ..ops._parity import require_cpp

SR = 16000


def mel_power(x, n_fft, win, hop, n_mels, power):
    """torchaudio's MelSpectrogram written out: |STFT|^power through the HTK, unnormalised filterbank."""
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, win, torch.hann_window(win, dtype=x.dtype),
                      center=True, pad_mode="reflect", return_complex=True).abs() ** power
    fb = mel_filterbank(SR, n_fft, n_mels, 0.0, SR / 2, "htk", None).to(x.dtype)
    out = torch.matmul(fb.t(), spec)
    return out.reshape(*x.shape[:-1], n_mels, out.shape[-1])


def test_defaults_are_derived_as_torchaudio_derives_them():
    m = MelSpectrogram(sample_rate=SR, n_fft=400, n_mels=40)
    assert (m.params.win_length, m.params.hop_length) == (400, 200)
    assert MelSpectrogram(n_fft=512, win_length=300, n_mels=40).params.hop_length == 150
    assert m(torch.randn(2, 8000)).shape == (2, 40, 1 + 8000 // 200)


@pytest.mark.parametrize("power", [2.0, 1.0])
def test_power_magnitude_and_db(power):
    """dB of the power spectrum runs on the C++ kernel; magnitude and linear output on the reference."""
    require_cpp()
    x = torch.randn(2, 3, 4000, dtype=torch.float64)
    want = mel_power(x, 512, 400, 160, 40, power)
    kw = dict(sample_rate=SR, n_fft=512, win_length=400, hop_length=160, n_mels=40, power=power)
    linear = MelSpectrogram(db=False, **kw)(x)
    torch.testing.assert_close(linear, want, rtol=1e-9, atol=1e-12)
    for backend in ("reference", "cpp") if power == 2.0 else ("reference",):
        db = MelSpectrogram(backend=backend, **kw)(x)
        torch.testing.assert_close(db, (20.0 / power) * torch.log10(want.clamp(min=1e-10)), rtol=1e-9, atol=1e-9)
    with pytest.raises(RuntimeError, match="the fused kernels compute dB of the power spectrum"):
        MelSpectrogram(db=False, backend="cpp", **kw)(x)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_top_db_floors_each_item_over_all_its_channels(backend):
    require_cpp()
    x = torch.randn(2, 3, 4000, dtype=torch.float64)
    x[:, 2] *= 1e-4  # a quiet channel: floored by its loud siblings, not by its own maximum
    kw = dict(sample_rate=SR, n_fft=512, win_length=400, hop_length=160, n_mels=40, backend=backend)
    db = 10.0 * torch.log10(mel_power(x, 512, 400, 160, 40, 2.0).clamp(min=1e-10))
    want = torch.maximum(db, db.amax(dim=(-3, -2, -1), keepdim=True) - 30.0)
    got = MelSpectrogram(top_db=30.0, **kw).double()(x)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    for b in range(2):  # the quiet channel (80 dB down) sits on its item's floor, which its own max would not give
        assert (got[b, 2] == got[b].amin()).all() and got[b, 2].amin() > db[b, 2].amax() - 30.0
    one = MelSpectrogram(top_db=30.0, **kw).double()(x[0, 0])  # a lone waveform: its own (n_mels, frames)
    torch.testing.assert_close(one, torch.maximum(db[0, 0], db[0, 0].amax() - 30.0), rtol=1e-9, atol=1e-9)
    x[1, 0, 100] = float("nan")  # a NaN reaches every channel of its item through the floor, no other item
    got = MelSpectrogram(top_db=30.0, **kw).double()(x)
    assert got[1].isnan().all() and not got[0].isnan().any()


def test_window_and_filterbank_are_non_persistent_buffers():
    m = MelSpectrogram(sample_rate=SR, n_fft=512, n_mels=40)
    assert m.state_dict() == {} and {n for n, _ in m.named_buffers()} == {"window", "filterbank"}
    assert m.filterbank.shape == (257, 40) and m.window.shape == (512,)
    x = torch.randn(2, 4000, dtype=torch.float64)
    exact = m(x)
    m = m.float()  # float32 buffers no longer serve a float64 input: the exact constants do
    assert m.window.dtype == m.filterbank.dtype == torch.float32
    torch.testing.assert_close(m(x), exact, rtol=0, atol=0)
    torch.testing.assert_close(m(x.float()), exact.float())


@pytest.mark.parametrize("kwargs, match", [
    (dict(db=False, top_db=80.0), "with db=False pass top_db=None"),
    (dict(power=0.0), "power must be a positive number"),
    (dict(power=True), "power must be a positive number"),
    (dict(hop_length=0), "hop_length must be a positive integer"),
    (dict(backend="gpu"), "backend='gpu' is not a backend"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MelSpectrogram(**kwargs)
