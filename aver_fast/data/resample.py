"""Band-limited resampling: a Kaiser-windowed sinc filter applied as a polyphase convolution."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _kernel(orig: int, new: int, width: int, rolloff: float, beta: float) -> tuple[torch.Tensor, int]:
    """``(new, 1, taps)`` filters, one per output phase, and the left padding (float64)."""
    base = min(orig, new) * rolloff  # cut-off below the lower Nyquist frequency
    pad = int(math.ceil(width * orig / base))
    idx = torch.arange(-pad, pad + orig, dtype=torch.float64)[None, :] / orig  # input offsets, in output periods
    t = (-torch.arange(new, dtype=torch.float64)[:, None] / new + idx) * base  # (new, taps)
    t = t.clamp(-width, width)
    window = torch.special.i0(beta * torch.sqrt(1 - (t / width) ** 2)) / torch.special.i0(torch.tensor(beta,
                                                                                                    dtype=torch.float64))
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    return (sinc * window * base / orig)[:, None, :], pad


def resample(wave: torch.Tensor, orig_freq: int, new_freq: int, width: int = 16, rolloff: float = 0.945,
             beta: float = 14.769656459379492) -> torch.Tensor:
    """Resample ``(..., samples)`` from ``orig_freq`` to ``new_freq`` Hz; output ``ceil(samples * new / orig)``.

    Kaiser-windowed sinc (``width`` zero crossings each side, cut-off ``rolloff`` × the lower Nyquist frequency):
    the same construction as torchaudio's ``sinc_interp_kaiser``.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return wave
    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    kernel, pad = _kernel(orig, new, width, rolloff, beta)
    shape = wave.shape
    x = wave.reshape(-1, 1, shape[-1])
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    y = F.conv1d(F.pad(x.to(dtype), (pad, pad + orig)), kernel.to(dtype=dtype, device=x.device), stride=orig)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    target = int(math.ceil(new * shape[-1] / orig))
    return y[:, :target].reshape(*shape[:-1], target).to(wave.dtype)
