"""Checkpoints: weights as safetensors, optimizer/scheduler/RNG state beside them, both written atomically and
tied by an id, so a crash mid-save never leaves a checkpoint that loads inconsistently."""
from __future__ import annotations

import os
import random
import uuid

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def _atomic(path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(prefix: str, model: torch.nn.Module, state: dict) -> None:
    """``prefix.safetensors`` (weights) and ``prefix.state.pt`` (``state`` + RNG), each replaced atomically."""
    ckpt_id = uuid.uuid4().hex
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic(prefix + ".safetensors", lambda p: save_file(tensors, p, metadata={"id": ckpt_id}))
    full = dict(state, id=ckpt_id, rng=rng_state())
    _atomic(prefix + ".state.pt", lambda p: torch.save(full, p))


def load_checkpoint(prefix: str) -> tuple[dict, dict]:
    """``(weights, state)``; raises ``ValueError`` naming the files when they are missing or do not belong
    together."""
    wpath, spath = prefix + ".safetensors", prefix + ".state.pt"
    for p in (wpath, spath):
        if not os.path.isfile(p):
            raise ValueError(f"checkpoint file not found: {p}")
    from safetensors import safe_open

    with safe_open(wpath, "pt") as f:
        wid = (f.metadata() or {}).get("id")
    state = torch.load(spath, map_location="cpu", weights_only=False)
    if wid != state.get("id"):
        raise ValueError(f"{wpath} and {spath} are from different saves (interrupted write?)")
    return load_file(wpath), state
