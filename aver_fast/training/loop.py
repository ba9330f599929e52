"""The training loop of ``aver-fast train``, as separate steps: :func:`prepare` (checks, data, model, optimiser,
resume), :func:`train_epoch`, :func:`end_epoch` (schedule, validation, model selection, checkpoints, log) and
:func:`train`, which runs them. Under ``torchrun`` it trains with DistributedDataParallel: rank 0 logs and saves;
validation CCC is computed on every rank's gathered predictions."""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import check_run, remove_stale, save_run
from ..data import AffWild2Dataset, discover, split_videos
from ..models import OnFeatures
from . import distributed, steps
from .config import TrainConfig, build_model
from .features import FeatureDataset
from .resume import restore
from .sampler import EpochSampler

LOG = "log.jsonl"  # one JSON record per epoch, in the run folder


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient, weight or validation score (``on_nonfinite="stop"``); the CLI exits with
    ``exit_code``."""

    exit_code = 3


@dataclass
class Run:
    """One run's state: what :func:`prepare` builds and each epoch advances."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module  # what a step calls: the model, its OnFeatures, or their DDP wrapper
    params: list[torch.Tensor]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    split: dict
    train_set: Dataset
    val_set: Dataset
    epoch: int = 0  # the epoch to run next
    batch: int = 0  # batches of that epoch already done (a mid-epoch resume)
    best: dict | None = None
    history: list = field(default_factory=list)
    stats: dict = field(default_factory=lambda: new_stats())

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def last(self) -> str:
        return os.path.join(self.cfg.out, "last")

    def save(self, name: str, epoch: int, batch: int) -> None:
        save_run(os.path.join(self.cfg.out, name), self.model, self.cfg, self.split, epoch=epoch, batch=batch,
                 best=self.best, history=self.history, optimizer=self.opt.state_dict(),
                 scheduler=self.sched.state_dict(), stats=self.stats)

    def diverged(self, epoch: int, step: int, why: str) -> TrainingDiverged:
        kept = f"the last finite checkpoint {self.last} is kept" if os.path.lexists(self.last) else "nothing was saved"
        return TrainingDiverged(f"training diverged at epoch {epoch + 1}, step {step}: {why}; {kept}. Lower the "
                                "learning rate, or --set on_nonfinite=skip to skip such batches")


def new_stats() -> dict:
    """The running totals of one epoch (they survive a mid-epoch resume, so the log covers the whole epoch)."""
    return {"loss_sum": 0.0, "batches": 0, "skipped": 0}


def check_writable(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"output folder {path} is not writable: {e}") from None


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, dict]:
    """Training and validation sets of ``cfg.data`` (windows, or cached features with ``cfg.features``) and the
    split by video."""
    names = [e.name for e in discover(cfg.data)]
    split = split_videos(names, seed=cfg.split_seed)
    if not split["train"] or not split["val"]:
        raise ValueError(f"{cfg.data}: {len(names)} videos are too few for a train/val/test split")
    if cfg.features:
        return FeatureDataset(cfg.features, split["train"]), FeatureDataset(cfg.features, split["val"]), split
    train = AffWild2Dataset(cfg.data, split["train"], cfg.alignment(cfg.train_stride), seed=cfg.seed, faces=cfg.faces)
    val = AffWild2Dataset(cfg.data, split["val"], cfg.alignment(), seed=cfg.seed, faces=cfg.faces)
    return train, val, split


def prepare(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> Run:
    """Every check before any training (output folder, the run's own files, device, data), then the model,
    optimiser and schedule, restored from ``OUT/last`` with ``resume``."""
    rank, world = distributed.init()
    device = distributed.select_device(cfg.device, rank)
    check_writable(cfg.out)
    check_run(cfg.out)  # nothing there that is not the run's own is ever replaced or deleted
    if rank == 0:
        remove_stale(cfg.out)
    if not cfg.data or not os.path.isdir(cfg.data):
        raise ValueError(f"data folder not found: {cfg.data!r}")
    train_set, val_set, split = build_datasets(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = steps.optimizer(params, cfg)
    net = OnFeatures(model) if cfg.features else model
    net = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    run = Run(cfg, rank, world, device, model, net, params, opt, sched, split, train_set, val_set)
    if resume:
        progress = restore(run.last, cfg, model, opt, sched)
        run.epoch = progress["epoch"]
        run.batch = progress["batch"]
        run.best = progress["best"]
        run.history = progress["history"]
        run.stats = progress["stats"] or new_stats()
        if run.main:
            log(f"resumed {run.last} at epoch {run.epoch + 1}, batch {run.batch}")
    return run


def loaders(run: Run) -> tuple[DataLoader, EpochSampler, DataLoader]:
    """The training loader (and its sampler) and the validation loader, ``batch_size / world`` per rank. The
    loaders have their own generator: creating an iterator must not draw from the global RNG, whose state
    (dropout) a mid-epoch checkpoint restores."""
    cfg, per_rank = run.cfg, max(1, run.cfg.batch_size // run.world)
    rng = torch.Generator().manual_seed(cfg.seed)
    sampler = EpochSampler(len(run.train_set), cfg.seed, run.rank, run.world)
    train = DataLoader(run.train_set, per_rank, sampler=sampler, num_workers=cfg.num_workers, generator=rng)
    val = DataLoader(run.val_set, per_rank, sampler=EpochSampler(len(run.val_set), 0, run.rank, run.world, False,
                                                                 False), num_workers=cfg.num_workers, generator=rng)
    return train, sampler, val


def train_epoch(run: Run, epoch: int, loader: DataLoader, sampler: EpochSampler, interrupted: Callable[[], bool]
                ) -> tuple[int, float]:
    """One epoch's optimiser steps (from ``run.batch`` when it resumes); ``(batches run, windows per second)``.
    Raises :class:`TrainingDiverged` on a non-finite step (``on_nonfinite="stop"``) and KeyboardInterrupt, after
    saving a resumable checkpoint, when ``interrupted()``."""
    cfg, first = run.cfg, run.batch if epoch == run.epoch else 0
    sampler.epoch, sampler.skip = epoch, first * loader.batch_size
    if epoch != run.epoch:
        run.stats = new_stats()
    run.net.train()
    total = min(len(loader) + first, cfg.max_batches or len(loader) + first)
    amp = cfg.amp and (run.device.type == "cuda" or cfg.amp_cpu)
    batches, progress = iter(loader), _progress(range(first, total), run.main, f"epoch {epoch + 1}/{cfg.epochs}")
    t0, seen = time.perf_counter(), 0
    for b in progress:
        batch = next(batches)
        loss, why = steps.backward(run.net, batch, run.device, run.opt, run.params, amp)
        stop, bad = distributed.any_rank([interrupted(), why is not None], run.world, run.device)
        if bad and cfg.on_nonfinite == "stop":
            raise run.diverged(epoch, b + 1, why or "another rank's loss or gradient is not finite")
        if bad:
            run.opt.zero_grad(set_to_none=True)
            run.stats["skipped"] += 1
        else:
            run.opt.step()
            run.stats["loss_sum"] += loss.item()
            run.stats["batches"] += 1
        seen += batch["target"].shape[0] * run.world
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(loss=f"{loss.item():.3f}", ccc=f"{1 - loss.item():.3f}",
                                 skipped=run.stats["skipped"], win_s=f"{seen / (time.perf_counter() - t0):.1f}")
        if stop:
            if run.main:
                run.save("last", epoch, b + 1)
            raise KeyboardInterrupt(run.last)  # the argument: a resumable checkpoint was saved
    return total, seen / (time.perf_counter() - t0)


def end_epoch(run: Run, epoch: int, total: int, windows_per_s: float, val_loader: DataLoader,
              log: Callable[[str], None]) -> dict:
    """After an epoch: the schedule's step, the weights' check, validation, model selection, checkpoints (``best``
    when it improved, ``last``) and the log record, which is returned."""
    cfg = run.cfg
    with warnings.catch_warnings():  # an epoch resumed at its end (or all skipped) ran no optimizer step
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before")
        run.sched.step()
    if not all(bool(torch.isfinite(p).all()) for p in run.params):
        raise run.diverged(epoch, total, "a weight is not finite after the epoch")
    metrics = steps.validate(OnFeatures(run.model) if cfg.features else run.model, val_loader, run.device,
                             lambda *t: distributed.gather_predictions(*t, run.world))
    if not math.isfinite(metrics["mean"]) and cfg.on_nonfinite == "stop":
        raise run.diverged(epoch, total, f"the validation CCC is {metrics['mean']}")
    stats = run.stats
    record = {"epoch": epoch + 1, "loss": stats["loss_sum"] / stats["batches"] if stats["batches"] else None,
              "batches": stats["batches"], "skipped": stats["skipped"], "lr": run.opt.param_groups[0]["lr"],
              "val": metrics, "windows_per_s": windows_per_s}
    run.history.append(record)
    if math.isfinite(metrics["mean"]) and (run.best is None or metrics["mean"] > run.best["mean"]):
        run.best = dict(metrics, epoch=epoch + 1)
        if run.main:
            run.save("best", epoch + 1, 0)
    if run.main:
        run.save("last", epoch + 1, 0)
        with open(os.path.join(cfg.out, LOG), "a") as f:
            f.write(json.dumps(record) + "\n")
        log(_epoch_line(record, run.best))
    return record


def _epoch_line(record: dict, best: dict | None) -> str:
    m, loss = record["val"], "n/a" if record["loss"] is None else f"{record['loss']:.4f}"
    skipped = f", {record['skipped']} non-finite batches skipped" if record["skipped"] else ""
    return (f"epoch {record['epoch']}: loss {loss} val CCC v {m['valence']:.3f} a {m['arousal']:.3f} mean "
            f"{m['mean']:.3f} (best {best['mean'] if best else float('nan'):.3f}){skipped}")


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = print) -> dict | None:
    """Train ``cfg`` (the paper's recipe by default) and return the best validation metrics (None if no epoch
    finished). Ctrl-C finishes the current step, saves ``OUT/last`` and raises KeyboardInterrupt; a non-finite
    step raises :class:`TrainingDiverged` unless ``on_nonfinite="skip"``."""
    run = prepare(cfg, resume, log)
    train_loader, sampler, val_loader = loaders(run)
    with _sigint_flag() as interrupted:
        try:
            for epoch in range(run.epoch, cfg.epochs):
                total, rate = train_epoch(run, epoch, train_loader, sampler, interrupted)
                end_epoch(run, epoch, total, rate, val_loader, log)
        except KeyboardInterrupt as e:
            if run.main and e.args:
                log(f"interrupted: saved {run.last}; continue with --resume")
            raise
    return run.best


@contextlib.contextmanager
def _sigint_flag() -> Iterator[Callable[[], bool]]:
    """Within the block Ctrl-C sets a flag (read by calling the yielded function) instead of raising, so the step
    in flight finishes and the run saves before it stops (handlers live in the main thread only)."""
    flag = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT)
    if in_main:
        signal.signal(signal.SIGINT, lambda _signum, _frame: flag.set())
    try:
        yield flag.is_set
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, leave=False, disable=None)  # None: off when stderr is not a terminal
