"""JCA: joint cross-attention fusion (paper Eq. 8-12; Praveen et al. 2022)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops._registry import check_name
from ..ops.jca_correlation import jca_correlation_pair
from ._checks import batch_of_one, check_sequence, unbatched
from ._mask import check_mask, zero_padded


class JCALayer(nn.Module):
    """One joint cross-attention step; ``(B, L, C_a), (B, L, C_v)`` -> attended ``(B, L, C_a), (B, L, C_v)``.

    ``J = [a; v]`` (Eq. 8), ``C_m = tanh(m W_Jm Jᵀ/√d)`` (Eq. 9, :func:`aver_fast.jca_correlation`),
    ``H_m = ReLU(W_m m + W_Cm C_m)`` (Eq. 10; ``W_Cm`` acts over the L axis), ``m_att = W_Hm H_m + m`` (Eq. 11).
    """

    def __init__(self, dim_a: int, dim_v: int, seq_len: int, hidden: int, dropout: float = 0.0,
                 backend: str | None = None) -> None:
        super().__init__()
        d = dim_a + dim_v
        self.backend = backend
        self.w_ja = nn.Parameter(torch.empty(dim_a, d))
        self.w_jv = nn.Parameter(torch.empty(dim_v, d))
        nn.init.xavier_uniform_(self.w_ja)
        nn.init.xavier_uniform_(self.w_jv)
        self.w_a, self.w_v = nn.Linear(dim_a, hidden), nn.Linear(dim_v, hidden)
        self.w_ca, self.w_cv = nn.Linear(seq_len, hidden), nn.Linear(seq_len, hidden)
        self.w_ha, self.w_hv = nn.Linear(hidden, dim_a), nn.Linear(hidden, dim_v)
        self.dropout = nn.Dropout(dropout)

    def forward(self, a: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: a ``(B, L, C_a)``, v ``(B, L, C_v)``, mask ``(B, L)`` -> the same two shapes; with a mask the
        correlations with padded steps (columns of ``C_m``) are 0 and padded rows of the outputs are 0."""
        j = torch.cat([a, v], dim=-1)
        c_a, c_v = jca_correlation_pair(a, self.w_ja, v, self.w_jv, j, backend=self.backend)  # (B, L, L) each
        if mask is not None:
            c_a, c_v = (torch.where(mask[:, None, :], c, 0.0) for c in (c_a, c_v))
        h_a = torch.relu(self.w_a(a) + self.w_ca(c_a))
        h_v = torch.relu(self.w_v(v) + self.w_cv(c_v))
        out = self.w_ha(self.dropout(h_a)) + a, self.w_hv(self.dropout(h_v)) + v
        return out if mask is None else (zero_padded(out[0], mask), zero_padded(out[1], mask))


class FeatureCoAttentionLayer(nn.Module):
    """The public code's JCA layer (its ``DCNLayer`` sublayer): features attend to features, not steps to steps.

    ``(B, L, C_a), (B, L, C_v)`` -> ``(B, L, C_a), (B, L, C_v)``; ``D = C_v + C_a``, ``J = [v; a]``, ``Q = W_Q J``
    ``(B, L, D)``; per modality m: ``K_m = W_Km mᵀ`` (a linear map over the L axis, ``(B, C_m, L)``),
    ``S_m = tanh(K_m Q/√D)`` ``(B, C_m, D)``, ``H_m = ReLU(tanh((W_m m) S_m))`` ``(B, L, D)``,
    ``m' = m + ReLU(W_Om H_m)``. Dropout on ``S_m`` and after the last ReLU. Every map has a bias.
    """

    def __init__(self, dim_a: int, dim_v: int, seq_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        d = dim_a + dim_v
        self.w_q = nn.Linear(d, d)
        self.w_ka, self.w_kv = nn.Linear(seq_len, seq_len), nn.Linear(seq_len, seq_len)
        self.w_a, self.w_v = nn.Linear(dim_a, dim_a), nn.Linear(dim_v, dim_v)
        self.w_oa, self.w_ov = nn.Linear(d, dim_a), nn.Linear(d, dim_v)
        self.dropout = nn.Dropout(dropout)

    def _attend(self, m: torch.Tensor, q: torch.Tensor, w_k: nn.Linear, w_m: nn.Linear, w_o: nn.Linear) -> torch.Tensor:
        s = self.dropout(torch.tanh(torch.matmul(w_k(m.transpose(1, 2)), q) / math.sqrt(q.shape[-1])))  # (B, C_m, D)
        h = torch.relu(torch.tanh(torch.matmul(w_m(m), s)))  # (B, L, D)
        return m + self.dropout(torch.relu(w_o(h)))

    def forward(self, a: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: a ``(B, L, C_a)``, v ``(B, L, C_v)``, mask ``(B, L)`` -> the same two shapes (padded rows 0; the
        inputs' padded rows must be 0, as :class:`JCA` makes them)."""
        q = self.w_q(torch.cat([v, a], dim=-1))
        out = self._attend(a, q, self.w_ka, self.w_a, self.w_oa), self._attend(v, q, self.w_kv, self.w_v, self.w_ov)
        return out if mask is None else (zero_padded(out[0], mask), zero_padded(out[1], mask))


JCA_ATTENTIONS = ("time", "features")


class JCA(nn.Module):
    """Joint cross-attention: ``(B, L, dim_a), (B, L, dim_v)`` -> ``X̂ = [x_att,v; x_att,a]`` ``(B, L, dim_v + dim_a)``.

    ``hidden`` (k in Eq. 10) defaults to ``dim_a + dim_v``. ``num_layers > 1`` applies the layer recursively with
    separate weights (the public code uses 2; the paper's Eq. 8-12 describe one). ``W_Ca``/``W_Cv`` act over time,
    so the sequence length is fixed at construction. ``attention="features"`` uses the public code's layer instead
    (:class:`FeatureCoAttentionLayer`; ``hidden`` unused). ``backend``: that of the correlation (Eq. 9), as on
    :func:`aver_fast.jca_correlation`.
    """

    def __init__(self, dim_a: int, dim_v: int, seq_len: int, hidden: int | None = None, num_layers: int = 1,
                 dropout: float = 0.0, attention: str = "time", backend: str | None = None) -> None:
        super().__init__()
        check_name(backend)  # at construction rather than at the first batch
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if attention not in JCA_ATTENTIONS:
            raise ValueError(f"attention must be one of {JCA_ATTENTIONS}, got {attention!r}")
        self.dim_a = dim_a
        self.dim_v = dim_v
        self.seq_len = seq_len
        self.attention = attention
        hidden = hidden or dim_a + dim_v
        self.layers = nn.ModuleList(JCALayer(dim_a, dim_v, seq_len, hidden, dropout, backend) if attention == "time"
                                    else FeatureCoAttentionLayer(dim_a, dim_v, seq_len, dropout)
                                    for _ in range(num_layers))

    def forward(self, a: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: a ``(B, L, dim_a)``, v ``(B, L, dim_v)`` -> ``(B, L, dim_v + dim_a)``; unbatched ``(L, dim_a)``,
        ``(L, dim_v)`` -> ``(L, dim_v + dim_a)``; ``L = seq_len``.

        ``mask (B, L)`` (or ``(L,)``) bool, True for real steps: the real steps' outputs do not depend on what the
        padded steps hold (``W_Ca``, ``W_Cv`` are built for ``seq_len`` steps, so they are not those of a shorter
        sequence); padded rows are 0.
        """
        if unbatched(a) and unbatched(v):
            return self.forward(a.unsqueeze(0), v.unsqueeze(0), batch_of_one(mask)).squeeze(0)
        check_sequence("a", a, self.dim_a, self.seq_len)
        check_sequence("v", v, self.dim_v, self.seq_len)
        if a.shape[0] != v.shape[0]:
            raise ValueError(f"a has batch {a.shape[0]} but v has batch {v.shape[0]}")
        if mask is not None:
            check_mask(mask, a, "a")
            a, v = zero_padded(a, mask), zero_padded(v, mask)
        for layer in self.layers:
            a, v = layer(a, v, mask)
        return torch.cat([v, a], dim=-1)
