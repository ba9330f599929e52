"""Run configuration shared by the commands: the presets (each model size paired with the data alignment that
feeds it), :class:`TrainConfig` with its TOML/``key=value`` loading, and the configured model."""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import AlignmentConfig
from ..data.faces import FACE_MODES
from ..models import MODELS, AVERConfig


@dataclass(frozen=True)
class Preset:
    """A model size and the alignment that feeds it. The model's input sizes (``seq_len``, ``frames_per_clip``,
    ``image_size``, ``n_mels``, ``audio_frames``) are derived from the alignment, so the two cannot disagree."""

    model: Callable[..., AVERConfig]
    alignment: Callable[..., AlignmentConfig]
    help: str

    def model_config(self, **overrides) -> AVERConfig:
        a = self.alignment()
        inputs = dict(seq_len=a.steps, frames_per_clip=a.frames_per_subseq, image_size=a.image_size,
                      n_mels=a.n_mels, audio_frames=a.audio_frames)
        return self.model(**(inputs | overrides))


PRESETS: dict[str, Preset] = {
    "paper": Preset(AVERConfig.paper, AlignmentConfig, "the paper's sizes: 512-frame windows of 16 x 32 frames"),
    "tiny": Preset(AVERConfig.tiny, AlignmentConfig.tiny, "trains end to end on 2 CPU cores in minutes"),
    "public_code": Preset(AVERConfig.public_code, AlignmentConfig.public_code,
                          "the authors' public code (TLAB_CAM): its fusion model, init, dropouts and 64-band audio"),
}


@dataclass
class TrainConfig:
    """Every setting of a run; a TOML file and ``--set key=value`` overrides fill it (unknown keys are errors)."""

    data: str = ""  # Aff-Wild2-format dataset folder
    out: str = "runs/aver"
    features: str = ""  # cached backbone features (aver-fast extract-features); "" decodes the media
    fusion: str = "aver"  # a key of aver_fast.models.MODELS
    preset: str = "paper"  # a key of PRESETS
    use_tcn: bool = True
    use_lstm: bool = True
    use_attention: bool = True
    mask_padding: str = "preset"  # the model leaves padded steps out: "preset" (paper, tiny: on; public_code: off),
    # "on" or "off"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_decay: float = 0.9
    lr_decay_start: int = 15
    lr_decay_every: int = 5
    seed: int = 0
    split_seed: int = 0
    train_stride: int = 512  # frames between training windows (smaller = overlapping windows)
    num_workers: int = 0
    max_batches: int = 0  # cap on batches per epoch (0 = all), for quick runs
    amp: bool = True  # bfloat16 autocast on GPU
    amp_cpu: bool = False  # bfloat16 autocast on CPU too (tests the autocast path; rarely faster on CPUs)
    device: str = "auto"
    video_weights: str = ""  # torchvision-format r2plus1d_18 state dict file for the video backbone
    audio_weights: str = ""  # resnet18-format (1-channel conv1) state dict file for the audio backbone
    on_nonfinite: str = "stop"  # a non-finite loss or gradient: "stop" (exit 3) or "skip" the batch
    faces: str = "auto"  # "auto" (cropped_aligned/ when present, else detect), "detect" or "none" (frames as found)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # types first: "false" is not False, 1.9 is not an epoch count
            setattr(self, f.name, _typed(f, getattr(self, f.name)))
        if self.fusion not in MODELS:
            raise ValueError(f"fusion must be one of {sorted(MODELS)}, got {self.fusion!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        if self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}, got {self.faces!r}")
        if self.mask_padding not in MASK_PADDING:
            raise ValueError(f"mask_padding must be one of {tuple(MASK_PADDING)}, got {self.mask_padding!r}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {self.on_nonfinite!r}")
        for name, low in _AT_LEAST.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not self.lr_decay > 0:
            raise ValueError(f"lr_decay must be > 0, got {self.lr_decay}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"device must be 'auto' or a torch device ('cpu', 'cuda', 'cuda:1'), got "
                                 f"{self.device!r}") from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "TrainConfig":
        """The config a checkpoint records, validated like a TOML file (unknown keys and wrong types are errors,
        raised as ValueError starting with ``where``)."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: a run's config must be a table of settings, got {type(d).__name__}")
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown config keys {unknown}; valid keys: {known}")
        try:
            return cls(**d)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def model_config(self, freeze_backbones: bool = False) -> AVERConfig:
        """The preset with the ablation flags; backbones frozen when training on cached features (or asked)."""
        extra = {"freeze_backbones": True} if self.features or freeze_backbones else {}
        if MASK_PADDING[self.mask_padding] is not None:
            extra["mask_padding"] = MASK_PADDING[self.mask_padding]
        return PRESETS[self.preset].model_config(use_tcn=self.use_tcn, use_lstm=self.use_lstm,
                                                 use_attention=self.use_attention, **extra)

    def arch(self) -> list:
        """What a checkpoint must match to be resumed: the fusion model and its full configuration."""
        return [self.fusion, dataclasses.asdict(self.model_config())]

    def alignment(self, stride: int | None = None) -> AlignmentConfig:
        """The preset's alignment; windows ``stride`` frames apart (default: the window, no overlap)."""
        cfg = PRESETS[self.preset].alignment()
        return dataclasses.replace(cfg, window_stride=stride or cfg.window)


MASK_PADDING = {"preset": None, "on": True, "off": False}  # TrainConfig.mask_padding -> AVERConfig.mask_padding

# lower bounds of the numeric settings (lr_decay: > 0, checked apart)
_AT_LEAST = {"lr": 0, "epochs": 1, "batch_size": 1, "train_stride": 1, "lr_decay_every": 1, "lr_decay_start": 0,
             "weight_decay": 0, "seed": 0, "split_seed": 0, "num_workers": 0, "max_batches": 0}


def _kind(field: dataclasses.Field) -> str:
    return field.type if isinstance(field.type, str) else field.type.__name__


def _typed(field: dataclasses.Field, value):
    """``value`` as the setting's type, or a ValueError naming the key, the value and the type it takes (no
    conversion from another type: a TOML string "false" is not the boolean false)."""
    kind = _kind(field)
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          "str": isinstance(value, str)}[kind]
    if not ok:
        takes = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string"}[kind]
        raise ValueError(f"{field.name} takes {takes}, got {value!r} ({type(value).__name__})")
    return float(value) if kind == "float" else value


def _parse_value(field: dataclasses.Field, text: str):
    """A ``--set key=value`` text as the setting's type."""
    kind = _kind(field)
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{field.name} takes true/false, got {text!r}")
        return text.lower() in ("true", "1")
    try:
        return {"int": int, "float": float}.get(kind, str)(text)
    except ValueError:
        takes = {"int": "an integer", "float": "a number"}[kind]
        raise ValueError(f"{field.name} takes {takes}, got {text!r}") from None


def load_config(path: str | None = None, overrides: list[str] | None = None, **values) -> TrainConfig:
    """TOML file, then ``key=value`` overrides, then keyword values; unknown keys raise before any work."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    merged: dict = {}
    if path:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        if not os.path.isfile(path):
            raise ValueError(f"config file not found: {path}")
        try:
            with open(path, "rb") as f:
                merged.update(tomllib.load(f))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e})") from None
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"bad override {item!r}: expected key=value with key in {sorted(fields)}")
        merged[key] = _parse_value(fields[key], text)
    merged.update({k: v for k, v in values.items() if v is not None})
    return TrainConfig.from_dict(merged)


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The configured model, with backbone weights loaded from files when given (nothing is downloaded)."""
    model = MODELS[cfg.fusion](cfg.model_config())
    if cfg.video_weights:
        model.video_backbone.load_torchvision_weights(cfg.video_weights)
    if cfg.audio_weights:
        model.audio_backbone.load_torchvision_weights(cfg.audio_weights)
    return model
