"""The paper's alignment (Section 3): 512-frame windows -> 16 sub-sequences of 32 frames -> 8 uniformly sampled
frames each, plus the audio segment covering each sub-sequence; the label of a sub-sequence is its last frame's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sizes import PAPER, PUBLIC_CODE, TINY

SUBSEQ = 32  # frames per sub-sequence at paper size (the window is PAPER.steps of them)
TINY_SUBSEQ = 16


@dataclass(frozen=True)
class AlignmentConfig:
    """How windows, sub-sequences, frames and audio segments are cut and shaped.

    ``window_stride`` is the step between consecutive windows (512 = non-overlapping; smaller values give
    overlapping training windows). ``image_size`` is 224 in the paper text, 112 in its code. Audio: each
    sub-sequence's segment becomes a ``(n_mels, audio_frames)`` log-mel (win 882 / hop 441 at 44.1 kHz); segments
    are left-zero-padded or cropped at their start so the end stays aligned with the label frame.
    """

    window: int = PAPER.steps * SUBSEQ
    subseq: int = SUBSEQ
    frames_per_subseq: int = PAPER.frames
    window_stride: int = PAPER.steps * SUBSEQ
    image_size: int = PAPER.image_size
    sample_rate: int = 44100
    n_fft: int = 1024
    win_length: int = 882
    hop_length: int = 441
    n_mels: int = PAPER.n_mels
    audio_frames: int = PAPER.audio_frames
    mel_scale: str = "slaney"  # "htk": torchaudio's default, the public code's
    mel_norm: str | None = "slaney"  # None: triangles of height 1, torchaudio's default
    noise_reduction: bool = True
    db_mean: float = -40.0  # fixed affine normalisation of dB (keeps loudness, an arousal cue)
    db_std: float = 20.0

    def __post_init__(self) -> None:
        if self.window % self.subseq:
            raise ValueError(f"window={self.window} must be a multiple of subseq={self.subseq}")
        if not 1 <= self.frames_per_subseq <= self.subseq:
            raise ValueError(f"frames_per_subseq must be in [1, subseq], got {self.frames_per_subseq}")
        for name in ("window_stride", "image_size", "sample_rate", "audio_frames", "hop_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def steps(self) -> int:
        """Sub-sequences per window (L = 16 in the paper)."""
        return self.window // self.subseq

    @property
    def segment_samples(self) -> int:
        """Samples given to the log-mel of one sub-sequence: exactly ``audio_frames`` frames with ``center=True``."""
        return (self.audio_frames - 1) * self.hop_length + 1

    @classmethod
    def public_code(cls, **overrides) -> "AlignmentConfig":
        """The public code's audio front end: 64 HTK mel bands without area normalisation (torchaudio's defaults),
        no noise reduction, dB normalised as ``(dB + 14.8) / 19.895``."""
        base = dict(n_mels=PUBLIC_CODE.n_mels, mel_scale="htk", mel_norm=None, noise_reduction=False, db_mean=-14.8,
                    db_std=19.895)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny(cls, **overrides) -> "AlignmentConfig":
        """Matches ``AVERConfig.tiny()``: 8 steps of 16 frames, 4 frames each at 32 px, 32 mels x 24 frames."""
        window = TINY.steps * TINY_SUBSEQ
        base = dict(window=window, subseq=TINY_SUBSEQ, frames_per_subseq=TINY.frames, window_stride=window,
                    image_size=TINY.image_size, sample_rate=16000, n_fft=512, win_length=400, hop_length=320,
                    n_mels=TINY.n_mels, audio_frames=TINY.audio_frames)
        base.update(overrides)
        return cls(**base)


def window_starts(n_frames: int, cfg: AlignmentConfig) -> list[int]:
    """First frame of every window of a video; the last window is padded past the end (and masked)."""
    return list(range(0, max(n_frames, 1), cfg.window_stride))


def subseq_offsets(cfg: AlignmentConfig) -> np.ndarray:
    """The ``frames_per_subseq`` sampled frames of a sub-sequence, relative to its last frame (uniform, last = 0)."""
    return np.round(np.linspace(-(cfg.subseq - 1), 0, cfg.frames_per_subseq)).astype(np.int64)


def plan_window(start: int, n_frames: int, cfg: AlignmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the window at ``start``: sampled frame indices ``(steps, frames_per_subseq)`` (clamped into the video),
    the label frame of each step ``(steps,)`` (its last frame) and whether that step lies inside the video."""
    ends = start + (np.arange(cfg.steps) + 1) * cfg.subseq - 1
    frames = np.clip(ends[:, None] + subseq_offsets(cfg)[None, :], 0, n_frames - 1)
    return frames, ends, ends < n_frames


def real_steps(ends: np.ndarray, n_frames: int, cfg: AlignmentConfig) -> np.ndarray:
    """The steps of a window that cover at least one frame of the video, ``(steps,)`` bool (the model's padding
    mask); a step cut by the end counts (its frames are clamped to the last one), the steps after it are padding."""
    return ends - (cfg.subseq - 1) < n_frames


def segment_bounds(end_frame: int, fps: float, cfg: AlignmentConfig) -> tuple[int, int]:
    """Sample range ``[a, b)`` of the audio that covers the sub-sequence ending at ``end_frame`` (by timestamp)."""
    b = int(round((end_frame + 1) / fps * cfg.sample_rate))
    return b - cfg.segment_samples, b
