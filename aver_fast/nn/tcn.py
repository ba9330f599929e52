"""Temporal convolutional network (Bai, Kolter & Koltun 2018), batch-first."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions (weight-normalised unless ``weight_norm=False``, as in the public code) with
    ReLU, dropout and a residual connection.

    ``(B, C_in, L)`` -> ``(B, C_out, L)``; the left padding ``(kernel_size - 1) · dilation`` keeps it causal.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float,
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        wrap = _weight_norm if weight_norm else (lambda conv: conv)
        self.conv1 = wrap(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))
        self.conv2 = wrap(nn.Conv1d(out_channels, out_channels, kernel_size, dilation=dilation))
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self._args = (in_channels, out_channels, kernel_size, dilation, dropout, weight_norm)

    def __reduce_ex__(self, protocol):
        """Pickles (``torch.save(model)``, multiprocessing spawn, ``copy.deepcopy``) as its arguments and state:
        PyTorch refuses to pickle a weight-norm parametrized convolution itself."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_parameters", "_buffers", "_modules")}
        modes = [m.training for m in self.modules()]
        return _rebuild_block, (self._args, self.state_dict(keep_vars=True), state, modes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.conv1(nn.functional.pad(x, (self.pad, 0)))))
        h = self.dropout(torch.relu(self.conv2(nn.functional.pad(h, (self.pad, 0)))))
        res = x if self.downsample is None else self.downsample(x)
        return torch.relu(h + res)


def _rebuild_block(args: tuple, tensors: dict, state: dict, modes: list[bool]) -> TemporalBlock:
    """A pickled :class:`TemporalBlock`: built from its arguments, then given its tensors (with their dtype, device
    and requires_grad), its other attributes (hooks) and each submodule's training mode."""
    block = TemporalBlock(*args)
    block.load_state_dict(tensors, assign=True)
    block.__dict__.update(state)
    for m, training in zip(block.modules(), modes, strict=True):
        m.training = training
    return block


class TCN(nn.Module):
    """Stack of :class:`TemporalBlock` s; block ``i`` has dilation ``dilation ** i``.

    ``(B, L, in_channels)`` -> ``(B, L, channels[-1])``. The paper uses dilation 4; the public code 2, without
    weight normalisation.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_size: int = 3, dilation: int = 4,
                 dropout: float = 0.2, weight_norm: bool = True) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one block width")
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size}, {dilation}")
        widths = [in_channels, *channels]
        self.out_channels = widths[-1]
        self.blocks = nn.Sequential(*(TemporalBlock(widths[i], widths[i + 1], kernel_size, dilation ** i, dropout,
                                                    weight_norm)
                                      for i in range(len(channels))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: x ``(B, L, in_channels)`` -> ``(B, L, channels[-1])``; ``mask (B, L)`` bool (True: a real step):
        padded steps are zeroed before and after every block, so with trailing padding the real steps' outputs
        equal those of the unpadded sequence (the convolutions are causal)."""
        if mask is None:
            return self.blocks(x.transpose(1, 2)).transpose(1, 2)
        real = mask[:, None, :]
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(torch.where(real, h, 0.0))
        return torch.where(real, h, 0.0).transpose(1, 2)
