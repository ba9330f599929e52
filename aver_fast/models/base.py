"""What every fusion model shares: the two backbones and the ``(video, audio)`` -> features step."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..nn._mask import check_mask, zero_padded
from ..nn.audio_resnet import AudioResNet18
from ..nn.r2plus1d import R2Plus1D18
from ..ops._validation import check_tensor
from .config import AVERConfig

BACKBONES = ("video_backbone", "audio_backbone")  # the frozen parts; everything else is the fusion model
INFERENCE_CLIPS = 4  # clips per video-backbone call without gradients (peak memory; the same speed on CPU)


class AVModel(nn.Module):
    """Base of AVER and the baselines.

    ``model(video, audio)``: video ``(B, L, 3, T, H, W)``, audio ``(B, L, 1, n_mels, frames)``; the backbones give a
    per-step region map ``(B, L, R, C_v)`` and audio feature ``(B, L, C_a)``, passed to :meth:`forward_features`.
    ``config.region_layout`` says what a region is: a spatial position of the time-averaged map (``"spatial"``) or,
    as in the public code, one of the consecutive ``C_v``-value chunks of the whole map flattened channel-major
    (``"channel_major"``; for 8 frames at 112 px the map is ``(512, 1, 7, 7)``, 49 chunks).
    Frozen backbones (``config.freeze_backbones``) run without gradients and stay in eval mode.
    """

    def __init__(self, config: AVERConfig) -> None:
        super().__init__()
        self.config = config
        self.video_backbone = R2Plus1D18(config.video_widths, config.video_blocks)
        self.audio_backbone = AudioResNet18(config.audio_widths, config.audio_blocks)
        if config.freeze_backbones:
            for p in (*self.video_backbone.parameters(), *self.audio_backbone.parameters()):
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "AVModel":
        super().train(mode)
        if self.config.freeze_backbones:
            self.video_backbone.eval()
            self.audio_backbone.eval()
        return self

    def backbone_features(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, 3, T, H, W), (B, L, 1, M, F)`` -> region map ``(B, L, R, C_v)``, audio ``(B, L, C_a)``."""
        check_tensor("video", video)
        check_tensor("audio", audio)
        if video.dim() != 6 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, L, 3, T, H, W), got shape {tuple(video.shape)}")
        if audio.dim() != 5 or audio.shape[2] != 1:
            raise ValueError(f"audio must be (B, L, 1, n_mels, frames), got shape {tuple(audio.shape)}")
        if video.shape[:2] != audio.shape[:2]:
            raise ValueError(f"video (B, L) = {tuple(video.shape[:2])} differs from audio (B, L) = "
                             f"{tuple(audio.shape[:2])}")
        c = self.config
        expected = {"video frames per clip T": (video.shape[3], c.frames_per_clip),
                    "video height H": (video.shape[4], c.image_size), "video width W": (video.shape[5], c.image_size),
                    "audio mel bands": (audio.shape[3], c.n_mels), "audio frames": (audio.shape[4], c.audio_frames)}
        for what, (got, want) in expected.items():
            if got != want:
                raise ValueError(f"{what} is {got} but the model's config expects {want} (video shape "
                                 f"{tuple(video.shape)}, audio shape {tuple(audio.shape)}); prepare inputs with the "
                                 "AlignmentConfig that matches the preset")
        _check_batch(video, audio, "video", "audio")
        b, steps = video.shape[:2]
        regions, a = self.subsequence_features(video.flatten(0, 1), audio.flatten(0, 1))
        return regions.reshape(b, steps, *regions.shape[1:]), a.reshape(b, steps, -1)

    def subsequence_features(self, clips: torch.Tensor,
                             spectrograms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbones on independent sub-sequences: clips ``(N, 3, T, H, W)``, log-mels ``(N, 1, M, F)`` ->
        region maps ``(N, R, C_v)`` and audio features ``(N, C_a)`` (a window's steps are N of them)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbones):
            if torch.is_grad_enabled() or torch.compiler.is_compiling():  # (tracing: one call keeps B symbolic)
                fmap = self.video_backbone.forward_map(clips)
            else:  # inference: a few clips at a time bounds the activations' memory, whatever N is
                fmap = torch.cat([self.video_backbone.forward_map(c) for c in clips.split(INFERENCE_CLIPS)])
            if self.config.region_layout == "spatial":  # the H' x W' positions, time averaged
                regions = fmap.mean(dim=2).flatten(2).transpose(1, 2)
            else:  # the public code: the (C, T', H', W') map flattened, cut in consecutive C-value chunks
                regions = fmap.reshape(fmap.shape[0], -1, fmap.shape[1])
            a = self.audio_backbone(spectrograms)
        return regions, a

    def forward(self, video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: video ``(B, L, 3, T, H, W)``, audio ``(B, L, 1, n_mels, frames)``, mask ``(B, L)`` bool (True:
        a real step of the video; None: all real) -> ``(B, L, 2)``, or ``(B, 2)`` with ``pool="mean"``."""
        return self.forward_features(*self.backbone_features(video, audio), mask=mask)

    def forward_features(self, v_feat: torch.Tensor, a_feat: torch.Tensor,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def step_mask(self, mask: torch.Tensor | None, feat: torch.Tensor) -> torch.Tensor | None:
        """The padding mask the fusion uses: ``mask (B, L)`` checked against ``feat (B, L, ...)``, or None without
        one or with ``config.mask_padding`` off (the public code's behaviour: padded steps take part)."""
        if mask is None:
            return None
        check_mask(mask, feat, "the features")
        return mask if self.config.mask_padding else None

    def pool(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, L, C)`` per step (padded rows 0), or its mean over the real steps with ``pool="mean"`` ``(B, C)``
        (Eq. 14)."""
        if self.config.pool != "mean":
            return h if mask is None else zero_padded(h, mask)
        if mask is None:
            return h.mean(dim=1)
        return zero_padded(h, mask).sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype)

    def per_step(self, out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The head's per-step output with padded steps' predictions 0 (a pooled output as it is)."""
        return out if mask is None or self.config.pool == "mean" else zero_padded(out, mask)

    def _check_features(self, v_feat: torch.Tensor, a_feat: torch.Tensor) -> None:
        c = self.config
        check_tensor("v_feat", v_feat)
        check_tensor("a_feat", a_feat)
        if v_feat.dim() not in (3, 4) or v_feat.shape[-1] != c.video_dim:
            raise ValueError(f"v_feat must be (B, L, {c.video_dim}) or (B, L, R, {c.video_dim}), "
                             f"got shape {tuple(v_feat.shape)}")
        if a_feat.dim() != 3 or a_feat.shape[-1] != c.audio_dim:
            raise ValueError(f"a_feat must be (B, L, {c.audio_dim}), got shape {tuple(a_feat.shape)}")
        if v_feat.shape[:2] != a_feat.shape[:2]:
            raise ValueError(f"v_feat (B, L) = {tuple(v_feat.shape[:2])} differs from a_feat (B, L) = "
                             f"{tuple(a_feat.shape[:2])}")
        _check_batch(v_feat, a_feat, "v_feat", "a_feat")
        if v_feat.shape[1] != c.seq_len:
            raise ValueError(f"features have L={v_feat.shape[1]} steps but the model was built for "
                             f"seq_len={c.seq_len}")


def _check_batch(x: torch.Tensor, y: torch.Tensor, x_name: str, y_name: str) -> None:
    """Both inputs share a dtype and hold at least one item."""
    if x.dtype != y.dtype:
        raise TypeError(f"{x_name} is {x.dtype} but {y_name} is {y.dtype}; give both the same floating dtype "
                        "(or run under torch.autocast)")
    if x.shape[0] == 0:
        raise ValueError(f"the batch is empty ({x_name} shape {tuple(x.shape)}); pass at least one item")


class RegressionHead(nn.Module):
    """Two FC layers (Eq. 14): ``W2 ReLU(W1 h + b1) + b2`` -> ``(..., 2)`` [valence, arousal].

    ``separate=True``: one such ``in_dim -> hidden -> 1`` head per output (the public code's two regressors).
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float, separate: bool = False) -> None:
        super().__init__()
        self.separate = separate
        if separate:
            self.valence, self.arousal = (nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                                        nn.Linear(hidden, 1)) for _ in range(2))
        else:
            self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, 2)
            self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Shape: ``(..., in_dim)`` -> ``(..., 2)``."""
        if self.separate:
            return torch.cat([self.valence(h), self.arousal(h)], dim=-1)
        return self.fc2(self.dropout(torch.relu(self.fc1(h))))


class OnFeatures(nn.Module):
    """``forward(v_feat, a_feat)`` = ``model.forward_features``: the fusion part of ``model`` on cached backbone
    features (region map ``(B, L, R, C_v)``, audio ``(B, L, C_a)``). It shares the fusion's parameters with
    ``model`` and holds no backbone, so training it (DistributedDataParallel syncs gradients through ``forward``)
    trains ``model``, and exporting it writes the fusion alone."""

    def __init__(self, model: AVModel) -> None:
        super().__init__()
        fusion = copy.copy(model)  # the same parts without the backbones
        fusion._modules = {k: m for k, m in model._modules.items() if k not in BACKBONES}
        self.model = fusion

    def train(self, mode: bool = True) -> "OnFeatures":
        self.training = mode
        nn.Module.train(self.model, mode)  # not AVModel.train, which would set the (absent) backbones' mode
        return self

    def forward(self, v_feat: torch.Tensor, a_feat: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: as ``model.forward_features``: ``(B, L, R, C_v)``, ``(B, L, C_a)``, mask ``(B, L)`` ->
        ``(B, L, 2)``."""
        return self.model.forward_features(v_feat, a_feat, mask=mask)
