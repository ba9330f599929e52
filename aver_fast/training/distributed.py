"""Where a run trains: its rank among ``torchrun`` processes, its device, and the collectives that keep ranks in
step (one decision per step for all ranks; validation over every rank's predictions)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init(backend: str | None = None) -> tuple[int, int]:
    """``(rank, world)``: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is started (``backend``, else
    NCCL on GPUs and gloo otherwise); otherwise ``(0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def select_device(device: str, rank: int) -> torch.device:
    """``device`` ("auto", "cpu", "cuda", "cuda:1"), checked to exist; "auto": this rank's GPU, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", rank % torch.cuda.device_count())
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: training runs on 'cpu' or 'cuda'")
    if chosen.type == "cuda" and not (torch.cuda.is_available() and (chosen.index or 0) < torch.cuda.device_count()):
        seen = torch.cuda.device_count() if torch.cuda.is_available() else "no"
        raise ValueError(f"device {device!r} is not available (torch sees {seen} GPU); use --set device=cpu or "
                         "device=auto")
    return chosen


def any_rank(flags: list[bool], world: int, device: torch.device) -> list[bool]:
    """Each flag OR-ed over the ranks (torchrun forwards Ctrl-C to every rank, not at the same instant; one rank's
    loss may be non-finite): all ranks take the same decision after the same step, so none waits in a collective
    for the others."""
    if world == 1:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(x) for x in t.tolist()]


def merged(part: dict, world: int) -> dict:
    """Every rank's ``part`` (keys disjoint across ranks) as one dict, on every rank. Under torchrun a failed rank
    ends the job, so no rank waits here forever."""
    if world == 1:
        return part
    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    return {k: v for p in parts for k, v in p.items()}


def gather_predictions(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, world: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every rank's ``(pred, target, mask)`` concatenated, so the CCC is computed over the whole set, not
    averaged over ranks."""
    if world == 1:
        return pred, target, mask
    parts = [None] * world
    dist.all_gather_object(parts, (pred.cpu(), target.cpu(), mask.cpu()))
    return tuple(torch.cat([p[i] for p in parts]) for i in range(3))
