"""AVER (Moon et al., CMC 2025): backbones -> AVGA -> TLAB per modality -> JCA -> BiLSTM -> two FC (Eq. 1-14)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..nn.avga import AVGA
from ..nn.jca import JCA
from ..nn.lstm import BiLSTM
from ..nn.tlab import TLAB
from .base import BACKBONES, AVModel, RegressionHead
from .config import AVERConfig


def make_tlab(dim: int, c: AVERConfig) -> TLAB:
    return TLAB(dim, num_heads=c.tlab_heads, tcn_channels=(dim,) * c.tcn_levels, tcn_kernel_size=c.tcn_kernel_size,
                tcn_dilation=c.tcn_dilation, lstm_layers=c.lstm_layers, dropout=c.dropout, use_tcn=c.use_tcn,
                use_lstm=c.use_lstm, use_attention=c.use_attention, attention=c.attention,
                lstm_learned_init=c.lstm_learned_init, lstm_normalize=c.lstm_normalize,
                tcn_weight_norm=c.tcn_weight_norm, lstm_dropout=c.lstm_dropout, tcn_dropout=c.tcn_dropout,
                attention_dropout=c.attention_dropout)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases in every Linear and Conv of ``module`` (the public code's init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            with torch.no_grad():
                if parametrize.is_parametrized(m, "weight"):  # weight-normalised: set through its parametrisation
                    m.weight = nn.init.xavier_uniform_(torch.empty_like(m.weight))
                else:
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class AVER(AVModel):
    """The AVER model.

    ``model(video (B, L, 3, T, H, W), audio (B, L, 1, n_mels, frames))`` or
    ``model.forward_features(v_feat, a_feat)`` on cached backbone features: ``v_feat`` is the region map
    ``(B, L, R, C_v)`` (AVGA pools it, guided by the audio feature) or already-pooled ``(B, L, C_v)``;
    ``a_feat`` is ``(B, L, C_a)``. Returns ``(B, L, 2)`` [valence, arousal] per step, or ``(B, 2)`` with
    ``config.pool == "mean"`` (temporal average pooling before the FC layers, Eq. 14).

    With :meth:`AVERConfig.public_code` it computes the public code's ``TLAB_CAM``: ``TLAB_CAM(audio, video)`` on
    ``video (B, L, 25088)`` equals ``forward_features(video.view(B, L, 49, 512), audio)`` stacked as
    ``(B, L, 2)``, and ``model(video, audio)`` builds that map from the backbone the public way.
    """

    def __init__(self, config: AVERConfig | None = None) -> None:
        super().__init__(config or AVERConfig.paper())
        c = self.config
        self.avga = AVGA(c.video_dim, c.audio_dim, c.avga_hidden, c.avga_attn_dim, c.avga_audio_by_region)
        self.tlab_audio = make_tlab(c.audio_dim, c)
        self.tlab_video = make_tlab(c.video_dim, c)
        self.jca = JCA(c.audio_dim, c.video_dim, c.seq_len, c.jca_hidden, c.jca_layers, c.dropout_of("jca"),
                       attention=c.jca_attention)
        blstm_dropout = c.dropout_of("blstm")
        self.blstm = BiLSTM(c.audio_dim + c.video_dim, c.blstm_hidden, c.blstm_layers, blstm_dropout,
                            out_size=2 * c.blstm_hidden if c.blstm_project else None,
                            project_dropout=blstm_dropout, learned_init=c.lstm_learned_init,
                            normalize=c.lstm_normalize)
        self.head = RegressionHead(2 * c.blstm_hidden, c.head_hidden, c.dropout_of("head"),
                                   separate=c.separate_heads)
        if c.init == "xavier":
            for name, child in self.named_children():
                if name not in BACKBONES:
                    xavier_init(child)

    def forward_features(self, v_feat: torch.Tensor, a_feat: torch.Tensor,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: v_feat ``(B, L, R, C_v)`` or ``(B, L, C_v)``, a_feat ``(B, L, C_a)``, mask ``(B, L)`` bool ->
        ``(B, L, 2)`` (padded steps 0) or ``(B, 2)``. With a mask (and ``config.mask_padding``) the TLABs, JCA and
        BiLSTM leave the padded steps out and ``pool="mean"`` averages the real ones."""
        self._check_features(v_feat, a_feat)
        mask = self.step_mask(mask, a_feat)
        c = self.config
        if c.l2_normalize:
            if v_feat.dim() == 4 and c.normalize_whole_map:
                v_feat = nn.functional.normalize(v_feat.flatten(-2), dim=-1).view(v_feat.shape)
            else:
                v_feat = nn.functional.normalize(v_feat, dim=-1)
            a_feat = nn.functional.normalize(a_feat, dim=-1)
        a = self.tlab_audio(a_feat, mask)
        if v_feat.dim() == 4:
            v_feat = self.avga(v_feat, a if c.avga_after_audio_tlab else a_feat)
        v = self.tlab_video(v_feat, mask)
        h = self.blstm(self.jca(a, v, mask), mask)  # (B, L, 2 * blstm_hidden)
        return self.per_step(self.head(self.pool(h, mask)), mask)
