"""Spectral gating on a dB spectrogram (the paper's noise reduction step, which it does not specify)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def spectral_gate(db: torch.Tensor, quantile: float = 0.2, n_std: float = 1.5, reduction_db: float = 15.0,
                  softness_db: float = 2.0, smooth_frames: int = 3) -> torch.Tensor:
    """Attenuate time-frequency bins that do not rise above the noise floor; ``(..., n_mels, frames)`` in dB.

    The noise profile (mean and std per mel band) comes from the quietest ``quantile`` of frames (by mean dB);
    a bin is kept in proportion to a soft gate ``sigmoid((x - mean - n_std·std) / softness_db)``, smoothed over
    ``smooth_frames`` frames, and lowered by up to ``reduction_db`` when the gate is closed.
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    frames = db.shape[-1]
    k = max(1, int(round(quantile * frames)))
    energy = db.mean(dim=-2)  # (..., frames)
    idx = energy.topk(k, dim=-1, largest=False).indices  # quietest frames
    quiet = torch.gather(db, -1, idx.unsqueeze(-2).expand(*db.shape[:-1], k))
    mean = quiet.mean(dim=-1, keepdim=True)
    std = quiet.std(dim=-1, keepdim=True, unbiased=False) if k > 1 else torch.zeros_like(mean)
    gate = torch.sigmoid((db - mean - n_std * std) / softness_db)
    if smooth_frames > 1:
        flat = gate.reshape(-1, 1, frames)
        flat = F.avg_pool1d(F.pad(flat, (smooth_frames // 2, (smooth_frames - 1) // 2), mode="replicate"),
                            smooth_frames, stride=1)
        gate = flat.reshape(gate.shape)
    return db - reduction_db * (1.0 - gate)
