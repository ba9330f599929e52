"""Model configuration and presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class AVERConfig:
    """Everything that shapes an AVER model (and the baselines, which share the backbones and head sizes).

    Input layout: ``seq_len`` sub-sequences per window, each ``frames_per_clip`` RGB frames of ``image_size`` pixels
    and a ``(1, n_mels, audio_frames)`` log-mel spectrogram.
    """

    seq_len: int = 16
    frames_per_clip: int = 8
    image_size: int = 112
    n_mels: int = 128
    audio_frames: int = 104  # 1 + 45599 // 441: one 1.03 s window at 44.1 kHz
    video_widths: tuple[int, ...] = (64, 128, 256, 512)
    video_blocks: tuple[int, ...] = (2, 2, 2, 2)
    audio_widths: tuple[int, ...] = (64, 128, 256, 512)
    audio_blocks: tuple[int, ...] = (2, 2, 2, 2)
    freeze_backbones: bool = True
    l2_normalize: bool = True
    avga_hidden: int = 512
    avga_attn_dim: int = 49
    tlab_heads: int = 2
    tcn_levels: int = 2
    tcn_kernel_size: int = 3
    tcn_dilation: int = 4
    lstm_layers: int = 2
    dropout: float = 0.2
    attention: str = "global_local"
    use_tcn: bool = True
    use_lstm: bool = True
    use_attention: bool = True
    jca_layers: int = 2
    jca_hidden: int | None = None
    blstm_hidden: int = 256
    blstm_layers: int = 2
    head_hidden: int = 128
    pool: str = "none"

    def __post_init__(self) -> None:
        if self.pool not in ("none", "mean"):
            raise ValueError(f"pool must be 'none' or 'mean', got {self.pool!r}")
        for name in ("seq_len", "frames_per_clip", "image_size", "n_mels", "audio_frames", "tcn_levels",
                     "blstm_hidden", "head_hidden", "jca_layers", "tlab_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.video_widths, self.video_blocks = tuple(self.video_widths), tuple(self.video_blocks)
        self.audio_widths, self.audio_blocks = tuple(self.audio_widths), tuple(self.audio_blocks)

    @property
    def video_dim(self) -> int:
        return self.video_widths[-1]

    @property
    def audio_dim(self) -> int:
        return self.audio_widths[-1]

    @classmethod
    def paper(cls, **overrides) -> "AVERConfig":
        """The paper's sizes: L = 16 sub-sequences of 8 frames, 512-d features, R(2+1)D-18 and ResNet-18."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "AVERConfig":
        """Small enough to train end to end (backbones included) on 2 CPU cores in minutes."""
        base = dict(seq_len=8, frames_per_clip=4, image_size=32, n_mels=32, audio_frames=24,
                    video_widths=(8, 16, 24, 32), video_blocks=(1, 1, 1, 1),
                    audio_widths=(8, 16, 24, 32), audio_blocks=(1, 1, 1, 1), freeze_backbones=False,
                    avga_hidden=32, avga_attn_dim=16, tcn_dilation=2, lstm_layers=1, dropout=0.1,
                    jca_layers=1, jca_hidden=64, blstm_hidden=32, blstm_layers=1, head_hidden=32)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "AVERConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AVERConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AVERConfig keys: {unknown}")
        return cls(**d)
