"""Baselines of the paper's Table 2, on the same backbones and with the same interface as :class:`AVER`."""
from __future__ import annotations

import torch
from torch import nn

from ..nn._mask import compact, gather_steps, restore
from ..nn.jca import JCA
from ..nn.tcn import TCN
from .base import AVModel, RegressionHead
from .config import AVERConfig


class _TCNFusionBase(AVModel):
    """Spatially mean-pooled video regions and audio features, each through its own TCN."""

    def __init__(self, config: AVERConfig | None) -> None:
        super().__init__(config or AVERConfig.paper())
        c = self.config
        levels = (c.video_dim,) * c.tcn_levels
        self.tcn_video = TCN(c.video_dim, levels, c.tcn_kernel_size, c.tcn_dilation, c.dropout)
        self.tcn_audio = TCN(c.audio_dim, (c.audio_dim,) * c.tcn_levels, c.tcn_kernel_size, c.tcn_dilation,
                             c.dropout)

    def _temporal(self, v_feat: torch.Tensor, a_feat: torch.Tensor,
                  mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both modalities through their TCNs: ``(B, L, C_v), (B, L, C_a)``; ``mask`` a prefix mask (the caller
        compacts each item's real steps to the front, so a real step's causal TCN sees only real steps)."""
        self._check_features(v_feat, a_feat)
        if v_feat.dim() == 4:
            v_feat = v_feat.mean(dim=2)
        if self.config.l2_normalize:
            v_feat = nn.functional.normalize(v_feat, dim=-1)
            a_feat = nn.functional.normalize(a_feat, dim=-1)
        return self.tcn_video(v_feat, mask), self.tcn_audio(a_feat, mask)

    def _fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, v_feat: torch.Tensor, a_feat: torch.Tensor,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: v_feat ``(B, L, R, C_v)`` or ``(B, L, C_v)``, a_feat ``(B, L, C_a)``, mask ``(B, L)`` bool ->
        ``(B, L, 2)`` (padded steps 0) or ``(B, 2)``; with a mask the real steps' outputs equal those of the
        sequence without the padded steps (apart from JCA's ``seq_len``-wide weights, see :class:`JCA`)."""
        mask = self.step_mask(mask, a_feat)
        if mask is None:
            return self.head(self.pool(self._fuse(*self._temporal(v_feat, a_feat, None), None), None))
        order, prefix = compact(mask)
        v_feat, a_feat = gather_steps(v_feat, order), gather_steps(a_feat, order)
        h = self._fuse(*self._temporal(v_feat, a_feat, prefix), prefix)
        if self.config.pool == "mean":
            return self.head(self.pool(h, prefix))
        return restore(self.head(h), order, mask)


class JCABaseline(_TCNFusionBase):
    """Joint cross-attention fusion (Praveen, Granger & Cardinal, CVPRW 2022 / T-BIOM 2023).

    Per-modality TCNs on the backbone features, one JCA layer (the same Eq. 8-12 as AVER's fusion block), and the
    attended features ``[x_att,v; x_att,a]`` regressed per step by two FC layers. No TLAB, no BiLSTM.
    """

    def __init__(self, config: AVERConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.jca = JCA(c.audio_dim, c.video_dim, c.seq_len, c.jca_hidden, 1, dropout=c.dropout)
        self.head = RegressionHead(c.audio_dim + c.video_dim, c.head_hidden, c.dropout)

    def _fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.jca(a, v, mask)


class LeaderFollower(_TCNFusionBase):
    """Leader-follower attentive fusion (Zhang, Ding, Wei & Guan, ICCV 2021).

    Per-modality TCNs project each modality to a common width ``m``; at every time step an attention over the
    modalities (``M × M``, here visual and audio) mixes them, ``Z = softmax(Q Kᵀ/√m) V``; the leader (visual)
    feature is concatenated with the attended features and regressed per step.
    """

    def __init__(self, config: AVERConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        m = c.head_hidden
        self.proj_video, self.proj_audio = nn.Linear(c.video_dim, m), nn.Linear(c.audio_dim, m)
        self.w_q = nn.Linear(m, m)
        self.w_k = nn.Linear(m, m)
        self.w_v = nn.Linear(m, m)
        self.head = RegressionHead(3 * m, c.head_hidden, c.dropout)

    def _fuse(self, v: torch.Tensor, a: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        del mask  # the attention is over the modalities of one step
        x = torch.stack([self.proj_video(v), self.proj_audio(a)], dim=-2)  # (B, L, 2, m)
        z = nn.functional.scaled_dot_product_attention(self.w_q(x), self.w_k(x), self.w_v(x))  # (B, L, 2, m)
        return torch.cat([x[..., 0, :], z.flatten(-2)], dim=-1)  # leader + attended modalities (per step)
