"""Module form of :func:`aver_fast.log_mel`, with torchaudio's conventions."""
from __future__ import annotations

import torch
from torch import nn

from ..ops._registry import check_name
from ..ops._validation import compute_dtype
from ..ops.log_mel import _constants, log_mel_params, make_params


class MelSpectrogram(nn.Module):
    """Mel spectrogram, in dB by default: waveform ``(..., samples)`` -> ``(..., n_mels, frames)``.

    ``M |STFT(x)|^power`` with a periodic Hann window of ``win_length`` and the ``(n_mels, n_fft//2+1)`` mel
    filterbank ``M``; with ``db`` (the default) ``(20/power)·log10(max(·, 1e-10))`` floored per item at
    ``max - top_db`` over ``(channel, n_mels, frames)`` (torchaudio's ``AmplitudeToDB``); ``frames = 1 +
    samples // hop_length`` when ``center``.

    Defaults and derivations are torchaudio's ``MelSpectrogram`` (``win_length=None`` -> ``n_fft``,
    ``hop_length=None`` -> ``win_length // 2``, HTK mel scale, no filter normalisation); README lists every
    difference. The paper's settings (44.1 kHz, window 882, hop 441, Slaney) are in
    :class:`aver_fast.data.AlignmentConfig`. The window and the filterbank are non-persistent buffers: they follow
    ``.to()`` and are not in the ``state_dict``.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = None, f_min: float = 0.0, f_max: float | None = None, n_mels: int = 128,
                 power: float = 2.0, center: bool = True, pad_mode: str = "reflect", norm: str | None = None,
                 mel_scale: str = "htk", db: bool = True, top_db: float | None = None,
                 backend: str | None = None) -> None:
        super().__init__()
        self.params = make_params(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, center,
                                  pad_mode, mel_scale, norm, top_db, power, db, top_db_dims=3)
        self.backend = check_name(backend)
        window, _, fb = _constants(self.params, torch.float64, torch.device("cpu"))  # warns about empty filters now
        self.register_buffer("window", window.clone(), persistent=False)  # float64: converted down per call
        self.register_buffer("filterbank", fb.clone(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Shape: waveform ``(..., samples)`` -> ``(..., n_mels, frames)``; ``(B, C, samples)`` -> ``(B, C, n_mels,
        frames)`` with the top_db floor per ``b`` over its channels."""
        given = None
        if isinstance(waveform, torch.Tensor) and waveform.is_floating_point():
            dtype = compute_dtype(waveform.dtype)
            if torch.finfo(self.window.dtype).eps <= torch.finfo(dtype).eps:  # else (after .float()): exact ones
                given = (self.window.to(dtype), self.filterbank.to(dtype))
        return log_mel_params(waveform, self.params, self.backend, given)

    def extra_repr(self) -> str:
        p = self.params
        return (f"sample_rate={p.sample_rate}, n_fft={p.n_fft}, win_length={p.win_length}, hop_length={p.hop_length}, "
                f"n_mels={p.n_mels}, power={p.power}, db={p.db}, top_db={p.top_db}, mel_scale={p.mel_scale!r}, "
                f"norm={p.norm!r}")
