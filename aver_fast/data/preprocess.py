"""What the model sees, made from decoded media: frames resized and normalised as the video backbone was trained
(Kinetics statistics), and each step's audio segment as a normalised dB log-mel. The dataset (training,
evaluation) and the frame predictor (``predict``) both prepare their inputs here."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..ops.log_mel import log_mel
from .alignment import AlignmentConfig
from .media import READ_BYTES
from .noise_reduction import spectral_gate

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def resize_frames(frames: np.ndarray, cfg: AlignmentConfig) -> torch.Tensor:
    """``uint8 (U, H, W, 3)`` RGB -> ``(U, 3, S, S)`` resized (bilinear, antialiased) and Kinetics-normalised."""
    raw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    group = max(1, READ_BYTES // (4 * raw[0].numel())) if len(raw) else 1  # float copies of a few frames at a time
    x = torch.cat([F.interpolate(raw[k:k + group].float().div_(255.0), size=(cfg.image_size, cfg.image_size),
                                 mode="bilinear", antialias=True, align_corners=False)
                   for k in range(0, len(raw), group)]) if len(raw) else \
        torch.zeros(0, 3, cfg.image_size, cfg.image_size)
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def audio_steps(segments: torch.Tensor, cfg: AlignmentConfig) -> torch.Tensor:
    """Audio segments ``(L, samples)`` -> normalised dB log-mels ``(L, 1, n_mels, audio_frames)``."""
    db = log_mel(segments, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
                 hop_length=cfg.hop_length, n_mels=cfg.n_mels, mel_scale=cfg.mel_scale,
                 norm=cfg.mel_norm)  # (L, n_mels, audio_frames)
    if cfg.noise_reduction:
        db = spectral_gate(db)
    return ((db - cfg.db_mean) / cfg.db_std).unsqueeze(1)
