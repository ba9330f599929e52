"""Concordance correlation coefficient (paper Eq. 15) and the ``1 - mean CCC`` loss (Eq. 16)."""
from __future__ import annotations

import torch
from torch import nn

from .ops._validation import check_tensor

INVALID_LABEL = -5.0  # Aff-Wild2 marks unannotated frames with -5


def _valid_mask(target: torch.Tensor, mask: torch.Tensor | None, ignore_value: float | None) -> torch.Tensor:
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_value is not None:
        valid = valid & (target != ignore_value)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = valid frame), got {mask.dtype}")
        try:
            valid = valid & mask.expand_as(target)
        except RuntimeError:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not broadcast to target shape "
                             f"{tuple(target.shape)}") from None
    return valid


def ccc(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, dim: int | tuple[int, ...] = -1,
        *, ignore_value: float | None = INVALID_LABEL, eps: float = 1e-12) -> torch.Tensor:
    """Concordance correlation ``2 s_xy / (s_x² + s_y² + (x̄ - ȳ)²)`` along ``dim`` (population statistics).

    Frames where ``mask`` is False, or where ``target == ignore_value`` (Aff-Wild2's ``-5``), are excluded.
    Returns NaN where no valid frame remains, and where a valid frame of ``pred`` or ``target`` is NaN or infinite.
    ``pred`` and ``target`` have the same shape.
    """
    check_tensor("pred", pred)
    check_tensor("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    valid = _valid_mask(target, mask, ignore_value)
    w = valid.to(pred.dtype)
    n_valid = w.sum(dim=dim, keepdim=True)
    n = n_valid.clamp(min=1.0)  # keeps gradients finite where nothing is valid (the result is NaN there)
    x = torch.where(valid, pred, torch.zeros_like(pred))
    y = torch.where(valid, target, torch.zeros_like(target)).to(pred.dtype)
    mx = x.sum(dim=dim, keepdim=True) / n
    my = y.sum(dim=dim, keepdim=True) / n
    dx, dy = (x - mx) * w, (y - my) * w
    vx = dx.square().sum(dim=dim, keepdim=True) / n
    vy = dy.square().sum(dim=dim, keepdim=True) / n
    cov = (dx * dy).sum(dim=dim, keepdim=True) / n
    out = 2 * cov / (vx + vy + (mx - my).square() + eps)
    out = torch.where(n_valid > 0, out, torch.full_like(out, float("nan")))
    dims = (dim,) if isinstance(dim, int) else dim
    return out.squeeze(dims) if len(dims) else out


def va_ccc(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """``{"valence", "arousal", "mean"}``: the CCC of each of the two last-axis dimensions of ``(..., 2)``
    predictions over all frames (those where ``mask (...)`` is True when given; ``-5`` targets excluded), and
    their mean. The one place where evaluation results are built."""
    def frames(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if mask is None else x[mask]
    v, a = (ccc(frames(pred[..., i]), frames(target[..., i])).item() for i in range(2))
    return {"valence": v, "arousal": a, "mean": (v + a) / 2}


class CCCLoss(nn.Module):
    """``1 - (CCC_valence + CCC_arousal) / 2`` (paper Eq. 16).

    ``pred``/``target`` are ``(..., 2)`` ([valence, arousal] last); the CCC of each dimension is taken over all
    other axes flattened (the whole batch, as in the paper's code). Masked and ``-5`` frames are excluded; a
    dimension with no valid frame contributes a CCC of 0 (with zero gradient). A non-finite prediction or target
    on a valid frame makes the loss NaN (training stops or skips on it), never a finite-looking value.
    """

    def __init__(self, ignore_value: float | None = INVALID_LABEL) -> None:
        super().__init__()
        self.ignore_value = ignore_value

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if pred.dim() < 1 or pred.shape[-1] != 2:
            raise ValueError(f"pred must be (..., 2) [valence, arousal], got shape {tuple(pred.shape)}")
        p = pred.reshape(-1, 2).t()
        t = target.reshape(-1, 2).t() if target.shape == pred.shape else None
        if t is None:
            raise ValueError(f"target shape {tuple(target.shape)} differs from pred shape {tuple(pred.shape)}")
        m = None
        if mask is not None:
            if mask.shape == pred.shape[:-1]:
                mask = mask.unsqueeze(-1)
            m = mask.expand_as(pred).reshape(-1, 2).t()
        c = ccc(p, t, m, dim=-1, ignore_value=self.ignore_value)
        has_valid = _valid_mask(t, m, self.ignore_value).any(dim=-1)
        c = torch.where(has_valid, c, torch.zeros_like(c))
        return 1.0 - c.mean()
