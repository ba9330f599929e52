"""Shape checks shared by the modules."""
from __future__ import annotations

import torch

from ..ops._validation import check_tensor


def check_sequence(name: str, x: torch.Tensor, dim: int, seq_len: int | None = None) -> torch.Tensor:
    """``x`` is a float ``(B, L, dim)`` tensor (and ``L == seq_len`` when given)."""
    check_tensor(name, x)
    if x.dim() != 3 or x.shape[-1] != dim:
        raise ValueError(f"{name} must be (B, L, {dim}), got shape {tuple(x.shape)}")
    if seq_len is not None and x.shape[1] != seq_len:
        raise ValueError(f"{name} has L={x.shape[1]} steps but this module was built for seq_len={seq_len}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no time steps (shape {tuple(x.shape)})")
    return x


def batch_of_one(mask: object) -> object:
    """An unbatched call's ``(L,)`` mask as ``(1, L)`` (anything else as it is, for the mask check to name)."""
    return mask.unsqueeze(0) if isinstance(mask, torch.Tensor) else mask


def unbatched(x: object) -> bool:
    """``x`` is one ``(L, C)`` sequence without a batch dim (as ``nn.MultiheadAttention`` accepts)."""
    return isinstance(x, torch.Tensor) and x.dim() == 2
