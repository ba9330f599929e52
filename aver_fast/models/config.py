"""Model configuration and presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..sizes import PAPER, PUBLIC_CODE, TINY

REGION_LAYOUTS = ("spatial", "channel_major")
INITS = ("default", "xavier")


@dataclass
class AVERConfig:
    """Everything that shapes an AVER model (and the baselines, which share the backbones and head sizes).

    Input layout: ``seq_len`` sub-sequences per window, each ``frames_per_clip`` RGB frames of ``image_size`` pixels
    and a ``(1, n_mels, audio_frames)`` log-mel spectrogram.
    """

    seq_len: int = PAPER.steps
    frames_per_clip: int = PAPER.frames
    image_size: int = PAPER.image_size
    n_mels: int = PAPER.n_mels
    audio_frames: int = PAPER.audio_frames  # one 1.03 s segment at 44.1 kHz
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
    mask_padding: bool = True  # forward(..., mask): padded steps left out (the public code has no masks: False)
    # The public code's choices (``public_code()``); the defaults are the paper's. See README "Faithfulness notes".
    tcn_weight_norm: bool = True
    lstm_learned_init: bool = False  # learned initial LSTM state (TLAB LSTMs and the joint BiLSTM)
    lstm_normalize: bool = False  # L2-normalise the LSTM outputs (TLAB LSTM branch and the joint BiLSTM)
    blstm_project: bool = False  # joint BiLSTM: concatenate its input and project to 2 * blstm_hidden
    avga_audio_by_region: bool = False  # the audio term added per region (public) instead of per attention dim
    avga_after_audio_tlab: bool = False  # AVGA guided by the audio TLAB's output (public) instead of its input
    region_layout: str = "spatial"  # "channel_major": regions = consecutive C-value chunks of the flattened map
    normalize_whole_map: bool = False  # L2-normalise the whole region map of a step, not each region
    jca_attention: str = "time"  # "features": the public code's feature-by-feature co-attention
    separate_heads: bool = False  # one regressor per output (public) instead of one shared head
    init: str = "default"  # "xavier": xavier-uniform weights, zero biases in every Linear/Conv of the fusion part
    lstm_dropout: float | None = None  # each None: ``dropout``
    tcn_dropout: float | None = None
    attention_dropout: float | None = None  # on the TLAB cross-attention weights (and none on its output)
    jca_dropout: float | None = None
    blstm_dropout: float | None = None
    head_dropout: float | None = None

    def __post_init__(self) -> None:
        if self.pool not in ("none", "mean"):
            raise ValueError(f"pool must be 'none' or 'mean', got {self.pool!r}")
        if self.region_layout not in REGION_LAYOUTS:
            raise ValueError(f"region_layout must be one of {REGION_LAYOUTS}, got {self.region_layout!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        for name in ("seq_len", "frames_per_clip", "image_size", "n_mels", "audio_frames", "tcn_levels",
                     "blstm_hidden", "head_hidden", "jca_layers", "tlab_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.video_widths, self.video_blocks = tuple(self.video_widths), tuple(self.video_blocks)
        self.audio_widths, self.audio_blocks = tuple(self.audio_widths), tuple(self.audio_blocks)

    def dropout_of(self, part: str) -> float:
        """The dropout of ``part`` ("lstm", "tcn", "jca", "blstm", "head"): its own setting, else ``dropout``."""
        own = getattr(self, f"{part}_dropout")
        return self.dropout if own is None else own

    @property
    def num_regions(self) -> int:
        """Regions per step of the backbone's map: its H' x W' positions, times T' with ``channel_major``."""
        side, frames = self.image_size, self.frames_per_clip
        for _ in range(4):  # the stem and three strided stages halve H and W
            side = (side + 1) // 2
        for _ in range(3):  # the three strided stages halve T
            frames = (frames + 1) // 2
        return side * side * (frames if self.region_layout == "channel_major" else 1)

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
        base = dict(seq_len=TINY.steps, frames_per_clip=TINY.frames, image_size=TINY.image_size, n_mels=TINY.n_mels,
                    audio_frames=TINY.audio_frames, video_widths=(8, 16, 24, 32), video_blocks=(1, 1, 1, 1),
                    audio_widths=(8, 16, 24, 32), audio_blocks=(1, 1, 1, 1), freeze_backbones=False,
                    avga_hidden=32, avga_attn_dim=16, tcn_dilation=2, lstm_layers=1, dropout=0.1,
                    jca_layers=1, jca_hidden=64, blstm_hidden=32, blstm_layers=1, head_hidden=32)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def public_code(cls, **overrides) -> "AVERConfig":
        """The authors' public code (asmoon002/AVER, ``TLAB_CAM``): its forward pass in eval mode, its 26,971,763
        trainable fusion parameters, its initialisation and dropouts, 64 mel bands. Load its weights with
        :func:`aver_fast.models.load_public_state_dict`."""
        base = dict(n_mels=PUBLIC_CODE.n_mels, mask_padding=False, tcn_dilation=2, attention="cross",
                    tcn_weight_norm=False,
                    lstm_learned_init=True, lstm_normalize=True, blstm_project=True, avga_audio_by_region=True,
                    avga_after_audio_tlab=True, region_layout="channel_major", normalize_whole_map=True,
                    jca_attention="features", separate_heads=True, init="xavier", lstm_dropout=0.4, tcn_dropout=0.2,
                    attention_dropout=0.1, jca_dropout=0.4, blstm_dropout=0.2, head_dropout=0.6)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "AVERConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "AVERConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AVERConfig keys: {unknown}")
        return cls(**d)
