"""R(2+1)D-18 video backbone (Tran et al. 2018) whose ``state_dict`` keys match torchvision's ``r2plus1d_18``."""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` whose gradients stay right under CPU bfloat16 autocast: oneDNN's bf16 Conv3d weight gradient
    (torch 2.14, measured on an AVX512-BF16 CPU) is garbage (1e22, inf, NaN, varying run to run) for inputs of
    depth 2 with a depth-3 kernel, which the later stages of R(2+1)D have. So when a gradient is needed under CPU
    autocast it computes in float32 (its output cast back); inference keeps bfloat16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled()
                and (x.requires_grad or self.weight.requires_grad)):
            with torch.autocast("cpu", enabled=False):
                out = super().forward(x.float())
            return out.to(torch.get_autocast_dtype("cpu"))  # the rest of the network as under autocast
        return super().forward(x)


class Conv2Plus1D(nn.Sequential):
    """Spatial ``(1,3,3)`` conv -> BN -> ReLU -> temporal ``(3,1,1)`` conv (torchvision layout)."""

    def __init__(self, in_planes: int, out_planes: int, mid_planes: int, stride: int = 1) -> None:
        super().__init__(
            Conv3d(in_planes, mid_planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(mid_planes), nn.ReLU(inplace=True),
            Conv3d(mid_planes, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class BasicBlock3d(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        mid = (in_planes * planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(Conv2Plus1D(in_planes, planes, mid, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(Conv3d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + res)


class R2Plus1D18(nn.Module):
    """R(2+1)D video network; ``(N, 3, T, H, W)`` -> feature map ``(N, C, T/8, H/16, W/16)`` (:meth:`forward_map`)
    or, with ``num_classes``, logits via :meth:`forward`.

    Defaults (widths 64-512, 2 blocks per stage) are torchvision's ``r2plus1d_18``: ``num_classes=400`` gives the
    identical ``state_dict``; :meth:`load_torchvision_weights` loads such a file (the ``fc`` keys are dropped when
    this model has no classifier). Smaller ``widths``/``blocks`` give the ``tiny`` preset's backbone.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 num_classes: int | None = None) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"widths and blocks need 4 entries, got {widths}, {blocks}")
        stem_mid = 45 * widths[0] // 64
        self.stem = nn.Sequential(
            Conv3d(3, stem_mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(stem_mid),
            nn.ReLU(inplace=True),
            Conv3d(stem_mid, widths[0], (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=True))
        in_planes = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock3d(in_planes, w, stride)] + [BasicBlock3d(w, w) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            in_planes = w
        self.out_channels = in_planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_planes, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: clips ``(N, 3, T, H, W)`` -> the last stage's map ``(N, C, T', H', W')``."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"video clips must be (N, 3, T, H, W), got shape {tuple(x.shape)}")
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: clips ``(N, 3, T, H, W)`` -> pooled features ``(N, C)``, or logits ``(N, num_classes)`` when a
        classifier is present."""
        h = self.avgpool(self.forward_map(x)).flatten(1)
        return self.fc(h) if self.fc is not None else h

    def load_torchvision_weights(self, path: str | os.PathLike) -> None:
        """Load a torchvision-format ``r2plus1d_18`` state dict saved with ``torch.save`` (no download)."""
        load_state_file(self, path)


def load_state_file(module: nn.Module, path: str | os.PathLike) -> None:
    """Load a state dict file into ``module`` strictly, dropping ``fc.*`` when ``module`` has no classifier."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if getattr(module, "fc", None) is None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not match {type(module).__name__}: {e}") from None
