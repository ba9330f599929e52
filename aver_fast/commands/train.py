"""``aver-fast train``: the paper's recipe by default (Adam 1e-4, weight decay 1e-5, batch 16, 30 epochs, lr x 0.9
from epoch 15 and every 5 epochs after, ``1 - mean CCC``), model selection on validation mean CCC, JSONL log, atomic
checkpoints, bit-exact ``--resume`` on CPU, Ctrl-C saves a resumable checkpoint; under ``torchrun`` it trains with
DistributedDataParallel (rank 0 logs and saves; validation CCC is computed on gathered predictions).

    aver-fast train --data DIR [--config run.toml] [--set key=value ...]
    torchrun --nproc_per_node 2 -m aver_fast train --data DIR ...

Exit 0 and the best validation metrics as JSON, 2 on bad input or an unusable checkpoint, 3 when training diverged,
130 on Ctrl-C (after saving a resumable checkpoint). The settings are :class:`aver_fast.config.TrainConfig`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import threading
import time
import warnings

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..checkpoint import check_run, load_checkpoint, remove_stale, save_run, set_rng_state
from ..config import PRESETS, TrainConfig, build_model, load_config
from ..data import AffWild2Dataset, discover, split_videos
from ..data.faces import FACE_MODES
from ..features import FeatureDataset
from ..metrics import CCCLoss, va_ccc
from ..models import MODELS

HELP = "train AVER (or --fusion jca|lf) on an Aff-Wild2-format dataset with the paper's recipe; keys: see " \
       "aver_fast.config.TrainConfig"


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """x lr_decay at ``lr_decay_start`` and every ``lr_decay_every`` epochs after (0-based epochs)."""
    if epoch < cfg.lr_decay_start:
        return 1.0
    return cfg.lr_decay ** (1 + (epoch - cfg.lr_decay_start) // cfg.lr_decay_every)


class EpochSampler(Sampler):
    """A seeded permutation per epoch, sharded by rank and resumable mid-epoch. ``pad`` repeats a few items so every
    rank has as many (training: equal step counts); evaluation shards without padding, so no window counts twice."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True,
                 pad: bool = True) -> None:
        self.n, self.seed, self.rank, self.world, self.shuffle, self.pad = n, seed, rank, world, shuffle, pad
        self.epoch, self.skip = 0, 0

    def indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
            order = order.tolist()
        else:
            order = list(range(self.n))
        if self.pad:
            order += order[: math.ceil(self.n / self.world) * self.world - self.n]
        return order[self.rank::self.world]

    def __iter__(self):
        return iter(self.indices()[self.skip:])

    def __len__(self) -> int:
        return len(self.indices()) - self.skip


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device != "auto":
        device = torch.device(cfg.device)
        if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) <
                                          torch.cuda.device_count()):
            raise ValueError(f"device {cfg.device!r} is not available (torch sees "
                             f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} GPU); "
                             f"use --set device=cpu or device=auto")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device {cfg.device!r}: training runs on 'cpu' or 'cuda'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def gather_predictions(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, world: int):
    """Concatenate every rank's (pred, target, mask) so the CCC is computed over the whole set, not averaged."""
    if world == 1:
        return pred, target, mask
    parts = [None] * world
    dist.all_gather_object(parts, (pred.cpu(), target.cpu(), mask.cpu()))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))


def run_epoch_eval(model, loader, device, world: int) -> dict:
    """Validation CCC (valence, arousal, mean) over all valid steps of all ranks."""
    model.eval()
    preds, targets, masks = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = _forward(model, batch, device)
            preds.append(out.float().cpu())
            targets.append(batch["target"])
            masks.append(batch["mask"])
    return va_ccc(*gather_predictions(torch.cat(preds), torch.cat(targets), torch.cat(masks), world))


class OnFeatures(torch.nn.Module):
    """``forward`` = the model's ``forward_features``, so DistributedDataParallel (which syncs gradients through
    ``forward``) can wrap training on cached features."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, v_feat: torch.Tensor, a_feat: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(v_feat, a_feat)


def _forward(net, batch, device) -> torch.Tensor:
    """``net`` is the model (or its :class:`OnFeatures` / DDP wrapper) and takes what the batch holds."""
    return net(batch["video"].to(device, non_blocking=True), batch["audio"].to(device, non_blocking=True))


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, dict]:
    names = [e.name for e in discover(cfg.data)]
    split = split_videos(names, seed=cfg.split_seed)
    if not split["train"] or not split["val"]:
        raise ValueError(f"{cfg.data}: {len(names)} videos are too few for a train/val/test split")
    if cfg.features:
        return FeatureDataset(cfg.features, split["train"]), FeatureDataset(cfg.features, split["val"]), split
    train = AffWild2Dataset(cfg.data, split["train"], cfg.alignment(cfg.train_stride), seed=cfg.seed, faces=cfg.faces)
    val = AffWild2Dataset(cfg.data, split["val"], cfg.alignment(), seed=cfg.seed, faces=cfg.faces)
    return train, val, split


def check_writable(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"output folder {path} is not writable: {e}") from None


class TrainingDiverged(RuntimeError):
    """A non-finite loss, gradient, weight or validation score (``on_nonfinite="stop"``); the CLI exits with
    ``exit_code``."""

    exit_code = 3


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


def _nonfinite(loss: torch.Tensor, params: list[torch.Tensor]) -> str | None:
    """Why this step cannot be applied (non-finite loss or gradient), or None."""
    if not torch.isfinite(loss):
        return f"the loss is {loss.item()}"
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        return "a gradient is not finite"
    return None


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict | None:
    """Train ``cfg`` and return the best validation metrics (None if no epoch finished); see the module
    docstring. Raises :class:`TrainingDiverged` on a non-finite loss or gradient unless ``on_nonfinite="skip"``."""
    rank, world = _distributed()
    device = _device(cfg, rank)
    main = rank == 0
    check_writable(cfg.out)  # every failure below happens before any training
    check_run(cfg.out)  # nothing there that is not the run's own is ever replaced or deleted
    if main:
        remove_stale(cfg.out)
    if not cfg.data or not os.path.isdir(cfg.data):
        raise ValueError(f"data folder not found: {cfg.data!r}")
    train_set, val_set, split = build_datasets(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg))
    start_epoch, start_batch, best, history = 0, 0, None, []
    stats = _new_stats()  # the epoch so far: survives a mid-epoch resume, so the log covers the whole epoch
    prefix = os.path.join(cfg.out, "last")
    if resume:
        weights, state = load_checkpoint(prefix)
        if state["arch"] != cfg.arch():
            raise ValueError(f"{prefix} is a checkpoint of another architecture ({state['arch'][0]}, "
                             f"preset settings differ); resume with the config it was trained with")
        check_resumable(cfg, state["config"], prefix)
        model.load_state_dict(weights)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, start_batch, best, history = state["epoch"], state["batch"], state["best"], state["history"]
        stats = state.get("stats", stats) if start_batch else stats
        set_rng_state(state["rng"])
        if main:
            log(f"resumed {prefix} at epoch {start_epoch + 1}, batch {start_batch}")
    net = OnFeatures(model) if cfg.features else model
    net = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    sampler = EpochSampler(len(train_set), cfg.seed, rank, world)
    per_rank_batch = max(1, cfg.batch_size // world)
    # the loaders get their own generator: creating an iterator must not draw from the global RNG, whose state
    # (dropout) a mid-epoch checkpoint restores
    loader_rng = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, per_rank_batch, sampler=sampler, num_workers=cfg.num_workers,
                              generator=loader_rng)
    val_loader = DataLoader(val_set, per_rank_batch, sampler=EpochSampler(len(val_set), 0, rank, world, False, False),
                            num_workers=cfg.num_workers, generator=loader_rng)
    loss_fn = CCCLoss()
    amp = cfg.amp and (device.type == "cuda" or cfg.amp_cpu)
    interrupted = {"flag": False}
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(_signum, _frame):  # finish the current step, then save and stop
        interrupted["flag"] = True
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    if in_main_thread:
        signal.signal(signal.SIGINT, on_sigint)

    def any_rank(*flags: bool) -> list[bool]:
        """Each flag OR-ed over the ranks (torchrun forwards Ctrl-C to every rank, not at the same instant; one
        rank's loss may be non-finite): all ranks take the same decision after the same step, so none waits in a
        collective for the others."""
        if world == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(x) for x in t.tolist()]

    def save(path: str, epoch: int, batch: int) -> None:
        save_run(path, model, cfg, split, epoch=epoch, batch=batch, best=best, history=history,
                 optimizer=opt.state_dict(), scheduler=sched.state_dict(), stats=stats)

    def diverged(epoch: int, step: int, why: str) -> TrainingDiverged:
        kept = f"the last finite checkpoint {prefix} is kept" if os.path.lexists(prefix) else "nothing was saved"
        return TrainingDiverged(f"training diverged at epoch {epoch + 1}, step {step}: {why}; {kept}. Lower the "
                                f"learning rate, or --set on_nonfinite=skip to skip such batches")

    log_path = os.path.join(cfg.out, "log.jsonl")
    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.epoch, sampler.skip = epoch, (start_batch * per_rank_batch if epoch == start_epoch else 0)
            net.train()
            t0, seen = time.perf_counter(), 0
            if epoch != start_epoch:
                stats = _new_stats()
            batches = iter(train_loader)
            first = start_batch if epoch == start_epoch else 0
            total = len(train_loader) + first
            if cfg.max_batches:
                total = min(total, cfg.max_batches)
            progress = _progress(range(first, total), main, f"epoch {epoch + 1}/{cfg.epochs}")
            for b in progress:
                batch = next(batches)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    pred = _forward(net, batch, device)
                loss = loss_fn(pred.float(), batch["target"].to(device), batch["mask"].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                why = _nonfinite(loss, params)
                stop, bad = any_rank(interrupted["flag"], why is not None)
                if bad:
                    if cfg.on_nonfinite == "stop":
                        raise diverged(epoch, b + 1, why or "another rank's loss or gradient is not finite")
                    opt.zero_grad(set_to_none=True)
                    stats["skipped"] += 1
                else:
                    opt.step()
                    stats["loss_sum"] += loss.item()
                    stats["batches"] += 1
                seen += batch["target"].shape[0] * world
                if hasattr(progress, "set_postfix"):
                    progress.set_postfix(loss=f"{loss.item():.3f}", ccc=f"{1 - loss.item():.3f}",
                                         skipped=stats["skipped"], win_s=f"{seen / (time.perf_counter() - t0):.1f}")
                if stop:
                    if main:
                        save(prefix, epoch, b + 1)
                        log(f"interrupted: saved {prefix}; continue with --resume")
                    raise KeyboardInterrupt
            with warnings.catch_warnings():  # an epoch resumed at its end (or all skipped) ran no optimizer step
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before")
                sched.step()
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise diverged(epoch, total, "a weight is not finite after the epoch")
            metrics = run_epoch_eval(OnFeatures(model) if cfg.features else model, val_loader, device, world)
            if not math.isfinite(metrics["mean"]) and cfg.on_nonfinite == "stop":
                raise diverged(epoch, total, f"the validation CCC is {metrics['mean']}")
            record = {"epoch": epoch + 1,
                      "loss": stats["loss_sum"] / stats["batches"] if stats["batches"] else None,
                      "batches": stats["batches"], "skipped": stats["skipped"], "lr": opt.param_groups[0]["lr"],
                      "val": metrics, "windows_per_s": seen / (time.perf_counter() - t0)}
            history.append(record)
            if math.isfinite(metrics["mean"]) and (best is None or metrics["mean"] > best["mean"]):
                best = dict(metrics, epoch=epoch + 1)
                if main:
                    save(os.path.join(cfg.out, "best"), epoch + 1, 0)
            if main:
                save(prefix, epoch + 1, 0)
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                loss_text = "n/a" if record["loss"] is None else f"{record['loss']:.4f}"
                log(f"epoch {epoch + 1}: loss {loss_text} val CCC v {metrics['valence']:.3f} "
                    f"a {metrics['arousal']:.3f} mean {metrics['mean']:.3f} "
                    f"(best {best['mean'] if best else float('nan'):.3f})"
                    + (f", {stats['skipped']} non-finite batches skipped" if stats["skipped"] else ""))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)
    return best


def _new_stats() -> dict:
    return {"loss_sum": 0.0, "batches": 0, "skipped": 0}


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, leave=False, disable=None)  # None: off when stderr is not a terminal



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with TrainConfig keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set epochs=5")
    p.add_argument("--data", help="Aff-Wild2-format dataset folder")
    p.add_argument("--out", help="run folder: log.jsonl and the checkpoints last and best")
    p.add_argument("--features", help="train the fusion on cached backbone features (aver-fast extract-features)")
    p.add_argument("--fusion", choices=list(MODELS), help=f"the model (default: {TrainConfig.fusion})")
    p.add_argument("--preset", choices=list(PRESETS), help=f"model and data sizes (default: {TrainConfig.preset})")
    p.add_argument("--no-tcn", action="store_true", help="ablation: TLABs without TCN")
    p.add_argument("--no-lstm", action="store_true", help="ablation: TLABs without LSTM")
    p.add_argument("--no-attention", action="store_true", help="ablation: TLABs without attention")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last (bit-exact on CPU)")
    p.add_argument("--faces", choices=FACE_MODES,
                   help="auto (default): the dataset's cropped_aligned/ frames when present, else detect and crop "
                        "the face; detect; none: the frames as found")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TOML file, then ``--set`` overrides, then the explicit flags."""
    values = dict(data=args.data, out=args.out, features=args.features, fusion=args.fusion, preset=args.preset,
                  faces=args.faces)
    for flag, key in (("no_tcn", "use_tcn"), ("no_lstm", "use_lstm"), ("no_attention", "use_attention")):
        if getattr(args, flag):
            values[key] = False
    return load_config(args.config, args.set, **values)


def run(args: argparse.Namespace) -> int:
    try:
        best = train(config_from_args(args), resume=args.resume)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(json.dumps({"best": best}))
    return 0
