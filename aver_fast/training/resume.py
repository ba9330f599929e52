"""Continuing a run from its ``last`` checkpoint: which settings may change on ``--resume``, and the restored
model, optimiser, schedule, progress and random state."""
from __future__ import annotations

import dataclasses

import torch

from ..checkpoint import load_checkpoint, set_rng_state
from .config import TrainConfig

# settings a resumed run may change (how long, how, where); every other one shapes the run and must match
RESUMABLE_CHANGES = frozenset({"epochs", "max_batches", "num_workers", "device", "out", "data", "features",
                               "on_nonfinite", "amp", "amp_cpu", "video_weights", "audio_weights", "faces"})


def check_resumable(cfg: TrainConfig, saved: dict, prefix: str) -> None:
    """Refuse a resume whose settings differ from the checkpoint's where the restored state would silently
    override them (learning rate, schedule, batch, seeds, split, strides): the run would record one value and
    train with another."""
    now = dataclasses.asdict(cfg)
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and k in saved and saved[k] != now[k])
    if changed:
        diffs = ", ".join(f"{k}={now[k]!r} (the run has {saved[k]!r})" for k in changed)
        raise ValueError(f"--resume of {prefix}: {diffs} cannot change mid-run (the restored optimizer and sampler "
                         f"keep the run's values); resume without them, or start a new run in another --out")


def restore(prefix: str, cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler) -> dict:
    """Load ``prefix`` into ``model``, ``opt`` and ``sched`` and restore the random state; returns the progress:
    ``epoch`` and ``batch`` to continue from, ``best``, ``history`` and the epoch's running ``stats`` (None at an
    epoch boundary)."""
    weights, state = load_checkpoint(prefix)
    if state["arch"] != cfg.arch():
        raise ValueError(f"{prefix} is a checkpoint of another architecture ({state['arch'][0]}, preset settings "
                         "differ); resume with the config it was trained with")
    check_resumable(cfg, state["config"], prefix)
    model.load_state_dict(weights)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return {"epoch": state["epoch"], "batch": state["batch"], "best": state["best"], "history": state["history"],
            "stats": state.get("stats") if state["batch"] else None}
