"""Module form of :func:`aver_fast.log_mel`."""
from __future__ import annotations

import torch
from torch import nn

from ..ops.log_mel import log_mel_params, make_params


class MelSpectrogram(nn.Module):
    """dB log-mel spectrogram: ``(..., samples)`` -> ``(..., n_mels, frames)``; arguments as :func:`aver_fast.log_mel`.

    Settings are validated once, at construction.
    """

    def __init__(self, sample_rate: int = 44100, n_fft: int = 1024, win_length: int | None = 882,
                 hop_length: int = 441, n_mels: int = 128, f_min: float = 0.0, f_max: float | None = None,
                 center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney",
                 norm: str | None = "slaney", top_db: float | None = 80.0, backend: str | None = None) -> None:
        super().__init__()
        self.params = make_params(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, center,
                                  pad_mode, mel_scale, norm, top_db)
        self.params.filterbank()  # builds (and warns about) the filterbank now rather than at the first batch
        self.backend = backend

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return log_mel_params(waveform, self.params, self.backend)

    def extra_repr(self) -> str:
        p = self.params
        return (f"sample_rate={p.sample_rate}, n_fft={p.n_fft}, win_length={p.win_length}, hop_length={p.hop_length}, "
                f"n_mels={p.n_mels}, mel_scale={p.mel_scale!r}, norm={p.norm!r}, top_db={p.top_db}")
