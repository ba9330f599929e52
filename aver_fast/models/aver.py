"""AVER (Moon et al., CMC 2025): backbones -> AVGA -> TLAB per modality -> JCA -> BiLSTM -> two FC (Eq. 1-14)."""
from __future__ import annotations

import torch
from torch import nn

from ..nn.avga import AVGA
from ..nn.jca import JCA
from ..nn.tlab import TLAB
from .base import AVModel, RegressionHead
from .config import AVERConfig


def make_tlab(dim: int, c: AVERConfig) -> TLAB:
    return TLAB(dim, num_heads=c.tlab_heads, tcn_channels=(dim,) * c.tcn_levels, tcn_kernel_size=c.tcn_kernel_size,
                tcn_dilation=c.tcn_dilation, lstm_layers=c.lstm_layers, dropout=c.dropout, use_tcn=c.use_tcn,
                use_lstm=c.use_lstm, use_attention=c.use_attention, attention=c.attention)


class AVER(AVModel):
    """The AVER model.

    ``model(video (B, L, 3, T, H, W), audio (B, L, 1, n_mels, frames))`` or
    ``model.forward_features(v_feat, a_feat)`` on cached backbone features: ``v_feat`` is the region map
    ``(B, L, R, C_v)`` (AVGA pools it, guided by the audio feature) or already-pooled ``(B, L, C_v)``;
    ``a_feat`` is ``(B, L, C_a)``. Returns ``(B, L, 2)`` [valence, arousal] per step, or ``(B, 2)`` with
    ``config.pool == "mean"`` (temporal average pooling before the FC layers, Eq. 14).
    """

    def __init__(self, config: AVERConfig | None = None) -> None:
        super().__init__(config or AVERConfig.paper())
        c = self.config
        self.avga = AVGA(c.video_dim, c.audio_dim, c.avga_hidden, c.avga_attn_dim)
        self.tlab_audio = make_tlab(c.audio_dim, c)
        self.tlab_video = make_tlab(c.video_dim, c)
        self.jca = JCA(c.audio_dim, c.video_dim, c.seq_len, c.jca_hidden, c.jca_layers, dropout=c.dropout)
        self.blstm = nn.LSTM(c.audio_dim + c.video_dim, c.blstm_hidden, c.blstm_layers, batch_first=True,
                             bidirectional=True, dropout=c.dropout if c.blstm_layers > 1 else 0.0)
        self.head = RegressionHead(2 * c.blstm_hidden, c.head_hidden, c.dropout)

    def forward_features(self, v_feat: torch.Tensor, a_feat: torch.Tensor) -> torch.Tensor:
        self._check_features(v_feat, a_feat)
        if self.config.l2_normalize:
            v_feat = nn.functional.normalize(v_feat, dim=-1)
            a_feat = nn.functional.normalize(a_feat, dim=-1)
        if v_feat.dim() == 4:
            v_feat = self.avga(v_feat, a_feat)
        a = self.tlab_audio(a_feat)
        v = self.tlab_video(v_feat)
        h, _ = self.blstm(self.jca(a, v))  # (B, L, 2 * blstm_hidden)
        if self.config.pool == "mean":
            h = h.mean(dim=1)
        return self.head(h)
