"""A checkpoint's ``int8`` entry (written by ``aver-fast quantize``): its check, the engine files it names, and
:func:`attach`, which puts the engine's backbones in a model in place of the fp32 ones."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from ..checkpoint import CheckpointError, read_checkpoint_file
from . import openvino as engine


def model_files(backbone: str) -> tuple[str, str]:
    """The checkpoint files of ``backbone``'s int8 model: its IR graph and weights."""
    return f"{backbone}.int8.xml", f"{backbone}.int8.bin"


def check_info(info, prefix: str, backbones: Iterable[str]) -> dict:
    """``info`` (a checkpoint's ``int8`` entry) as quantize writes it for ``backbones``, else CheckpointError."""
    backbones = set(backbones)
    ok = (isinstance(info, dict) and info.get("engine") == engine.ENGINE and isinstance(info.get("files"), dict)
          and set(info["files"]) == backbones
          and all(isinstance(f, (list, tuple)) and tuple(f) == model_files(k) for k, f in info["files"].items())
          and isinstance(info.get("source"), dict) and isinstance(info["source"].get("checkpoint"), str))
    if not ok:
        raise CheckpointError(f"{prefix}: its int8 entry is not one aver-fast quantize writes: damaged checkpoint")
    return info


def engine_backbone(name: str, xml: bytes, weights: bytes) -> engine.EngineModule:
    """The backbone ``name`` (``video_backbone``, ``audio_backbone``) of an int8 model's IR, compiled for this CPU."""
    return engine.EngineModule(engine.compile_bytes(xml, weights), name.split("_")[0])


def attach(model: torch.nn.Module, prefix: str, info: dict) -> None:
    """Replace ``model``'s backbones named in ``info`` (checked by :func:`check_info`) with the int8 models of the
    checkpoint ``prefix`` (each file checked against its manifest)."""
    for name, (xml, weights) in info["files"].items():
        setattr(model, name, engine_backbone(name, read_checkpoint_file(prefix, xml),
                                             read_checkpoint_file(prefix, weights)))
