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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.conv1(nn.functional.pad(x, (self.pad, 0)))))
        h = self.dropout(torch.relu(self.conv2(nn.functional.pad(h, (self.pad, 0)))))
        res = x if self.downsample is None else self.downsample(x)
        return torch.relu(h + res)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)
