"""The model's input sizes of each preset, defined once: :class:`aver_fast.data.AlignmentConfig` cuts windows to
them and :class:`aver_fast.models.AVERConfig` is built for them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class InputSizes:
    """A window of ``steps`` sub-sequences, each ``frames`` RGB frames of ``image_size`` pixels and a
    ``(n_mels, audio_frames)`` log-mel."""

    steps: int
    frames: int
    image_size: int
    n_mels: int
    audio_frames: int


PAPER = InputSizes(steps=16, frames=8, image_size=112, n_mels=128, audio_frames=104)  # 104 = 1 + 45599 // 441
TINY = InputSizes(steps=8, frames=4, image_size=32, n_mels=32, audio_frames=24)  # trains on 2 CPU cores in minutes
PUBLIC_CODE = dataclasses.replace(PAPER, n_mels=64)  # the authors' code: 64 mel bands
