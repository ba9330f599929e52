"""ResNet-18 on 1-channel log-mel spectrograms; keys match torchvision's ``resnet18`` (except conv1's input)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from .r2plus1d import load_state_file


class BasicBlock2d(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        h = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(h)) + res)


class AudioResNet18(nn.Module):
    """ResNet-18 audio backbone: ``(N, 1, n_mels, frames)`` -> globally pooled ``(N, C)`` (C = 512 by default)."""

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 in_channels: int = 1, num_classes: int | None = None) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"widths and blocks need 4 entries, got {widths}, {blocks}")
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock2d(in_planes, w, stride)] + [BasicBlock2d(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            in_planes = w
        self.out_channels = in_planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: spectrograms ``(N, in_channels, n_mels, frames)`` -> pooled features ``(N, C)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"spectrograms must be (N, {self.in_channels}, n_mels, frames), "
                             f"got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        h = self.avgpool(x).flatten(1)
        return self.fc(h) if self.fc is not None else h

    def load_torchvision_weights(self, path: str | os.PathLike) -> None:
        """Load a ``resnet18``-format state dict file (conv1 must have this model's input channels)."""
        load_state_file(self, path)
