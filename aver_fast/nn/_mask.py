"""Padding masks of the sequence modules: ``mask (B, L)`` bool, True for a real step.

A module given a mask computes on its real steps as if the padded ones were not there: :func:`compact` moves each
item's real steps to the front, in order (a prefix mask is left as it is), the module runs on that prefix, and
:func:`restore` puts the outputs back in place, padded rows 0.
"""
from __future__ import annotations

import torch

from ..ops._validation import check_bool_mask


def check_mask(mask: object, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``mask`` is a bool ``(B, L)`` tensor for ``x (B, L, C)`` on its device; returns it."""
    check_bool_mask(mask, x.device, "(B, L)", name)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but {name} (B, L) is {tuple(x.shape[:2])}")
    return mask


def compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, prefix)``: ``order (B, L)`` lists each item's real steps first, in order, then its padded ones;
    ``prefix (B, L)`` is the mask of the reordered steps (True for the first ``mask.sum(1)``)."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    lengths = mask.sum(1, keepdim=True)
    prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths
    return order, prefix


def gather_steps(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x (B, L, ...)`` with its steps reordered by ``order (B, L)``."""
    return x.gather(1, order.view(*order.shape, *(1,) * (x.dim() - 2)).expand_as(x))


def restore(y: torch.Tensor, order: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`gather_steps` for outputs ``y (B, L, ...)``, padded rows 0."""
    index = order.view(*order.shape, *(1,) * (y.dim() - 2)).expand_as(y)
    out = torch.zeros_like(y).scatter(1, index, y)
    return zero_padded(out, mask)


def zero_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x (B, L, ...)`` with the padded steps' rows set to 0 (no gradient reaches them)."""
    return torch.where(mask.view(*mask.shape, *(1,) * (x.dim() - 2)), x, 0.0)
