"""Weights of the authors' public code (asmoon002/AVER, ``models/orig_cam.py`` ``TLAB_CAM``) in
``AVER(AVERConfig.public_code())``.

The mapping is by name: each fusion parameter of our model has one counterpart in a ``TLAB_CAM`` state dict (the
backbones are not part of ``TLAB_CAM``). ``TLAB_CAM`` registers each TCN convolution twice (``conv1`` and
``net.0``, ``conv2`` and ``net.4``), so its state dict holds both names; they must agree.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import torch

from .aver import AVER
from .base import BACKBONES

_TLAB = r"tlab_(audio|video)\."
# (our name, the public name); a public name's \1 is "audio"/"video" for the TLABs, the layer index elsewhere
_RENAMES: tuple[tuple[str, str], ...] = (
    (_TLAB + r"lstm\.rnn\.(\w+)", r"\1_tlab.lstm.rnn.\2"),
    (_TLAB + r"lstm\.proj\.(weight|bias)", r"\1_tlab.lstm.linear.\2"),
    (_TLAB + r"lstm\.init_state", r"\1_tlab.lstm.init_hidden"),
    (_TLAB + r"tcn\.blocks\.(\d+)\.(conv1|conv2|downsample)\.(weight|bias)", r"\1_tlab.tcn.network.\2.\3.\4"),
    (_TLAB + r"w_q\.(weight|bias)", r"\1_tlab.query_fc.\2"),
    (_TLAB + r"w_k\.(weight|bias)", r"\1_tlab.key_fc.\2"),
    (_TLAB + r"w_v\.(weight|bias)", r"\1_tlab.value_fc.\2"),
    (_TLAB + r"w_o\.(weight|bias)", r"\1_tlab.out_fc.\2"),
    (_TLAB + r"norm\.(weight|bias)", r"\1_tlab.layer_norm.\2"),
    (r"avga\.out\.(weight|bias)", r"avga.attn.affine_feat.\1"),
    (r"avga\.(affine_\w+)\.(weight|bias)", r"avga.attn.\1.\2"),
    # the public layer takes (video, audio): its "1" is the video, its "2" the audio
    (r"jca\.layers\.(\d+)\.w_q\.(weight|bias)", r"coattn.dcn_layers.\1.dense_coattn.query_linear.\2"),
    (r"jca\.layers\.(\d+)\.w_kv\.(weight|bias)", r"coattn.dcn_layers.\1.dense_coattn.key1_linear.\2"),
    (r"jca\.layers\.(\d+)\.w_ka\.(weight|bias)", r"coattn.dcn_layers.\1.dense_coattn.key2_linear.\2"),
    (r"jca\.layers\.(\d+)\.w_v\.(weight|bias)", r"coattn.dcn_layers.\1.dense_coattn.value1_linear.\2"),
    (r"jca\.layers\.(\d+)\.w_a\.(weight|bias)", r"coattn.dcn_layers.\1.dense_coattn.value2_linear.\2"),
    (r"jca\.layers\.(\d+)\.w_ov\.(weight|bias)", r"coattn.dcn_layers.\1.linears.0.0.\2"),
    (r"jca\.layers\.(\d+)\.w_oa\.(weight|bias)", r"coattn.dcn_layers.\1.linears.1.0.\2"),
    (r"blstm\.rnn\.(\w+)", r"Joint.rnn.\1"),
    (r"blstm\.proj\.(weight|bias)", r"Joint.linear.\1"),
    (r"blstm\.init_state", r"Joint.init_hidden"),
    (r"head\.valence\.(\d+)\.(weight|bias)", r"vregressor.\1.\2"),
    (r"head\.arousal\.(\d+)\.(weight|bias)", r"aregressor.\1.\2"),
)
# second names of the same TCN tensors in a TLAB_CAM state dict -> their first names
_ALIASES = ((r"(.+\.tcn\.network\.\d+\.)net\.0\.(weight|bias)", r"\1conv1.\2"),
            (r"(.+\.tcn\.network\.\d+\.)net\.4\.(weight|bias)", r"\1conv2.\2"))


class PublicKeys(NamedTuple):
    """What :func:`load_public_state_dict` found: public names the state dict lacks, and names it has that
    ``TLAB_CAM`` does not (both in the public naming)."""

    missing: list[str]
    unexpected: list[str]


def public_name(name: str) -> str | None:
    """The ``TLAB_CAM`` name of one of our fusion parameters (``tlab_audio.w_q.weight`` ->
    ``audio_tlab.query_fc.weight``), or None when it has none."""
    for ours, theirs in _RENAMES:
        if re.fullmatch(ours, name):
            return re.sub(ours, theirs, name)
    return None


def load_public_state_dict(model: AVER, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> PublicKeys:
    """Copy a ``TLAB_CAM`` state dict (``torch.load`` of the public code's checkpoint, a ``module.`` prefix from
    ``DataParallel`` allowed) into ``model``, an ``AVER(AVERConfig.public_code())``; the backbones are untouched.

    Raises ``ValueError`` naming every missing and unexpected key (with ``strict``; otherwise only returns them and
    loads what matches), a key whose shape differs, or a model whose parameters have no public counterpart. Values
    are converted to the model's dtype and device.
    """
    if not isinstance(model, AVER):
        raise TypeError(f"model must be an aver_fast AVER, got {type(model).__name__}")
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(b + "." for b in BACKBONES))}
    mapping = {name: public_name(name) for name in ours}
    foreign = sorted(k for k, v in mapping.items() if v is None)
    if foreign:
        raise ValueError(f"the model is not built like TLAB_CAM (use AVER(AVERConfig.public_code())): "
                         f"{len(foreign)} of its parameters have no counterpart, e.g. {foreign[:4]}")
    given = _canonical(state_dict)
    wanted = {theirs: name for name, theirs in mapping.items()}
    found = PublicKeys(sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted)))
    if strict and (found.missing or found.unexpected):
        raise ValueError(f"not a TLAB_CAM state dict for this model: {len(found.missing)} missing key(s) "
                         f"{found.missing[:8]}, {len(found.unexpected)} unexpected key(s) {found.unexpected[:8]}")
    for theirs, name in wanted.items():
        if theirs in given and tuple(given[theirs].shape) != tuple(ours[name].shape):
            raise ValueError(f"{theirs} has shape {tuple(given[theirs].shape)} but the model's {name} is "
                             f"{tuple(ours[name].shape)}; is the model built with the public code's sizes?")
    with torch.no_grad():
        for theirs, name in wanted.items():
            if theirs in given:
                ours[name].copy_(given[theirs])
    return found


def _canonical(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without a ``module.`` prefix and with each aliased TCN tensor under its first name."""
    sd = dict(state_dict)
    for key, value in sd.items():
        if not torch.is_tensor(value):
            raise ValueError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    for alias, first in _ALIASES:
        for key in [k for k in sd if re.fullmatch(alias, k)]:
            target, value = re.sub(alias, first, key), sd.pop(key)
            if target in sd and not torch.equal(sd[target].cpu(), value.cpu()):
                raise ValueError(f"{key} and {target} name the same tensor in TLAB_CAM but differ in the state dict")
            sd.setdefault(target, value)
    return sd
