"""One training step and one validation pass, shared by ``aver-fast train`` and the demo: the paper's optimiser
(Adam) and schedule, the ``1 - mean CCC`` loss, and the check that refuses a non-finite step."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from ..metrics import CCCLoss, va_ccc
from .config import TrainConfig


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """x ``lr_decay`` at ``lr_decay_start`` and every ``lr_decay_every`` epochs after (0-based epochs)."""
    if epoch < cfg.lr_decay_start:
        return 1.0
    return cfg.lr_decay ** (1 + (epoch - cfg.lr_decay_start) // cfg.lr_decay_every)


def optimizer(params: list[torch.Tensor], cfg: TrainConfig
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with ``cfg.lr`` and ``cfg.weight_decay``, and the schedule of :func:`lr_factor` (stepped per epoch)."""
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg))


def forward(net: torch.nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
    """``net`` on what the batch holds: ``video``/``audio`` windows, or cached features for an
    :class:`~aver_fast.models.OnFeatures` net, with the padding mask ``steps``. ``(B, L, 2)``."""
    return net(batch["video"].to(device, non_blocking=True), batch["audio"].to(device, non_blocking=True),
               mask=batch["steps"].to(device, non_blocking=True))


def nonfinite(loss: torch.Tensor, params: list[torch.Tensor]) -> str | None:
    """Why this step cannot be applied (a non-finite loss or gradient), or None."""
    if not torch.isfinite(loss):
        return f"the loss is {loss.item()}"
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
        return "a gradient is not finite"
    return None


def backward(net: torch.nn.Module, batch: dict, device: torch.device, opt: torch.optim.Optimizer,
             params: list[torch.Tensor], amp: bool = False) -> tuple[torch.Tensor, str | None]:
    """Forward (bfloat16 autocast with ``amp``), ``1 - mean CCC`` over the batch's valid steps, and gradients:
    ``(loss, why the step must not be applied or None)``. The caller applies (``opt.step()``) or skips."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        pred = forward(net, batch, device)
    loss = CCCLoss()(pred.float(), batch["target"].to(device), batch["mask"].to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    return loss, nonfinite(loss, params)


def validate(net: torch.nn.Module, batches: Iterable[dict], device: torch.device, gather=None) -> dict:
    """CCC of valence and arousal (and their mean) over every valid step of ``batches``, in eval mode without
    gradients; ``gather(pred, target, mask)`` joins other ranks' predictions first."""
    net.eval()
    preds = []
    targets = []
    masks = []
    with torch.no_grad():
        for batch in batches:
            preds.append(forward(net, batch, device).float().cpu())
            targets.append(batch["target"])
            masks.append(batch["mask"])
    pred = torch.cat(preds)
    target = torch.cat(targets)
    mask = torch.cat(masks)
    if gather is not None:
        pred, target, mask = gather(pred, target, mask)
    return va_ccc(pred, target, mask)
