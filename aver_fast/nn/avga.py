"""AVGA: audio-guided attention over the spatial regions of a video feature map (Tian et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn


class AVGA(nn.Module):
    """Pool ``R`` regions with weights guided by the audio feature.

    ``regions (..., R, C_v)``, ``audio (..., C_a)`` -> ``(..., C_v)``:
    ``z_r = w_h · tanh(W_v ReLU(U_v r) + W_g ReLU(U_a a))`` (the audio term ``W_g ReLU(U_a a)``, of ``attn_dim``
    values, is added to every region's ``attn_dim``-vector), ``α = softmax_R(z)``, ``out = W_o Σ_R α_r r``.
    ``audio_by_region=True`` is the public code's indexing: audio value ``j`` is added to all of region ``j``'s
    vector (so ``R`` must equal ``attn_dim``). With the defaults at 512-d it has the public code's 838,193 parameters.
    """

    def __init__(self, video_dim: int = 512, audio_dim: int = 512, hidden: int = 512, attn_dim: int = 49,
                 audio_by_region: bool = False) -> None:
        super().__init__()
        self.video_dim = video_dim
        self.audio_dim = audio_dim
        self.attn_dim = attn_dim
        self.audio_by_region = audio_by_region
        self.affine_video = nn.Linear(video_dim, hidden)
        self.affine_audio = nn.Linear(audio_dim, hidden)
        self.affine_v = nn.Linear(hidden, attn_dim, bias=False)
        self.affine_g = nn.Linear(hidden, attn_dim, bias=False)
        self.affine_h = nn.Linear(attn_dim, 1, bias=False)
        self.out = nn.Linear(video_dim, video_dim)

    def forward(self, regions: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Shape: regions ``(..., R, video_dim)``, audio ``(..., audio_dim)`` -> pooled ``(..., video_dim)``."""
        if regions.dim() < 2 or regions.shape[-1] != self.video_dim:
            raise ValueError(f"regions must be (..., R, {self.video_dim}), got shape {tuple(regions.shape)}")
        if audio.shape[-1] != self.audio_dim or audio.shape[:-1] != regions.shape[:-2]:
            raise ValueError(f"audio must be {tuple(regions.shape[:-2]) + (self.audio_dim,)}, "
                             f"got shape {tuple(audio.shape)}")
        if self.audio_by_region and regions.shape[-2] != self.attn_dim:
            raise ValueError(f"audio_by_region adds the audio term per region: the map must have attn_dim="
                             f"{self.attn_dim} regions, got {regions.shape[-2]} (regions shape {tuple(regions.shape)})")
        v = torch.relu(self.affine_video(regions))
        g = self.affine_g(torch.relu(self.affine_audio(audio)))  # (..., attn_dim)
        g = g.unsqueeze(-1) if self.audio_by_region else g.unsqueeze(-2)
        z = self.affine_h(torch.tanh(self.affine_v(v) + g)).squeeze(-1)  # (..., R)
        alpha = torch.softmax(z, dim=-1)
        return self.out(torch.matmul(alpha.unsqueeze(-2), regions).squeeze(-2))
