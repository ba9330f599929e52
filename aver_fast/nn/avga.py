"""AVGA: audio-guided attention over the spatial regions of a video feature map (Tian et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn


class AVGA(nn.Module):
    """Pool ``R`` regions with weights guided by the audio feature.

    ``regions (..., R, C_v)``, ``audio (..., C_a)`` -> ``(..., C_v)``:
    ``z = w_h · tanh(W_v ReLU(U_v r) + W_g ReLU(U_a a))``, ``α = softmax_R(z)``, ``out = W_o Σ_R α r``.
    With the defaults at 512-d it has the public code's 838,193 parameters.
    """

    def __init__(self, video_dim: int = 512, audio_dim: int = 512, hidden: int = 512, attn_dim: int = 49) -> None:
        super().__init__()
        self.video_dim, self.audio_dim = video_dim, audio_dim
        self.affine_video = nn.Linear(video_dim, hidden)
        self.affine_audio = nn.Linear(audio_dim, hidden)
        self.affine_v = nn.Linear(hidden, attn_dim, bias=False)
        self.affine_g = nn.Linear(hidden, attn_dim, bias=False)
        self.affine_h = nn.Linear(attn_dim, 1, bias=False)
        self.out = nn.Linear(video_dim, video_dim)

    def forward(self, regions: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if regions.dim() < 2 or regions.shape[-1] != self.video_dim:
            raise ValueError(f"regions must be (..., R, {self.video_dim}), got shape {tuple(regions.shape)}")
        if audio.shape[-1] != self.audio_dim or audio.shape[:-1] != regions.shape[:-2]:
            raise ValueError(f"audio must be {tuple(regions.shape[:-2]) + (self.audio_dim,)}, "
                             f"got shape {tuple(audio.shape)}")
        v = torch.relu(self.affine_video(regions))
        g = torch.relu(self.affine_audio(audio))
        z = self.affine_h(torch.tanh(self.affine_v(v) + self.affine_g(g).unsqueeze(-2))).squeeze(-1)  # (..., R)
        alpha = torch.softmax(z, dim=-1)
        return self.out(torch.matmul(alpha.unsqueeze(-2), regions).squeeze(-2))
