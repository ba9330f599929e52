"""TLAB: TCN + LSTM + global-local attention block (paper Eq. 1-6)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops._registry import check_name
from ..ops.tlab_attention import tlab_attention
from ._checks import batch_of_one, check_sequence, unbatched
from ._mask import check_mask, compact, gather_steps, restore, zero_padded
from .lstm import BiLSTM
from .tcn import TCN

ATTENTIONS = ("global_local", "cross")


class TLAB(nn.Module):
    """Temporal Convolutional Network-LSTM Attention Block; ``(B, L, dim)`` -> ``(B, L, dim)``.

    ``T = TCN(x)`` (Eq. 1), ``Lh = LSTM(x)`` (Eq. 2; a bidirectional LSTM of ``dim // 2`` per direction whose output is
    concatenated with ``x`` and projected back to ``dim``, as in the public code; :class:`~aver_fast.nn.BiLSTM`),
    ``Q = W_Q Lh``, ``K = W_K T``, ``V = W_V T`` (Eq. 3), per head ``O = A_G (A_L V)`` with
    ``A_G = softmax(Q Kᵀ/√d)``, ``A_L = softmax(K Qᵀ/√d)`` (Eq. 4-6, :func:`aver_fast.tlab_attention`), then
    ``LayerNorm(Lh + W_O O)``.

    The public code's choices: ``attention="cross"`` (its single cross-attention ``softmax(Q Kᵀ/√d) V``),
    ``lstm_learned_init`` and ``lstm_normalize`` (a learned initial state, an L2-normalised LSTM branch),
    ``tcn_weight_norm=False``. Dropout: ``dropout`` everywhere unless ``lstm_dropout`` (between the LSTM layers and
    before its projection), ``tcn_dropout`` or ``attention_dropout`` (on the cross-attention weights instead of the
    attention output) is given.
    Ablations: ``use_tcn=False`` takes K, V from ``x``; ``use_lstm=False`` takes Q from ``x``;
    ``use_attention=False`` returns ``LayerNorm(Lh + T)`` (or whichever of the two remains, or ``x``).
    ``backend``: the backend of the attention product (``"reference"``, ``"cpp"``, ``"triton"``, ``"sdpa"``;
    None: chosen per call, see :func:`aver_fast.backends`).
    """

    def __init__(self, dim: int, num_heads: int = 2, tcn_channels: Sequence[int] | None = None,
                 tcn_kernel_size: int = 3, tcn_dilation: int = 4, lstm_layers: int = 2, dropout: float = 0.2,
                 use_tcn: bool = True, use_lstm: bool = True, use_attention: bool = True,
                 attention: str = "global_local", *, lstm_learned_init: bool = False, lstm_normalize: bool = False,
                 tcn_weight_norm: bool = True, lstm_dropout: float | None = None, tcn_dropout: float | None = None,
                 attention_dropout: float | None = None, backend: str | None = None) -> None:
        super().__init__()
        check_name(backend)  # at construction rather than at the first batch
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if attention_dropout is not None and attention != "cross":
            raise ValueError("attention_dropout (dropout on the attention weights) needs attention='cross'; the fused "
                             "global-local product has no dropout inside")
        tcn_channels = tuple(tcn_channels) if tcn_channels is not None else (dim, dim)
        self.dim = dim
        self.num_heads = num_heads
        self.attention = attention
        self.use_tcn = use_tcn
        self.use_lstm = use_lstm
        self.use_attention = use_attention
        self.tcn = TCN(dim, tcn_channels, tcn_kernel_size, tcn_dilation, _given(tcn_dropout, dropout),
                       weight_norm=tcn_weight_norm) if use_tcn else None
        kv_dim = tcn_channels[-1] if use_tcn else dim
        if use_tcn and not use_attention and kv_dim != dim:
            raise ValueError(f"without attention the TCN output ({kv_dim}) is added to the input and must equal "
                             f"dim={dim}")
        self.lstm = BiLSTM(dim, max(dim // 2, 1), lstm_layers, _given(lstm_dropout, dropout), out_size=dim,
                           project_dropout=_given(lstm_dropout, 0.0), learned_init=lstm_learned_init,
                           normalize=lstm_normalize) if use_lstm else None
        if use_attention:
            self.w_q = nn.Linear(dim, dim)
            self.w_k = nn.Linear(kv_dim, dim)
            self.w_v = nn.Linear(kv_dim, dim)
            self.w_o = nn.Linear(dim, dim)
        else:
            self.w_q = self.w_k = self.w_v = self.w_o = None
        self.attention_dropout = attention_dropout
        self.backend = backend
        self.dropout = nn.Dropout(dropout if attention_dropout is None else 0.0)
        self.norm = nn.LayerNorm(dim)
        self._register_load_state_dict_pre_hook(_rename_lstm_proj)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, steps, _ = x.shape
        return x.view(b, steps, self.num_heads, -1).transpose(1, 2)  # (B, H, L, dim/H)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: x ``(B, L, dim)``, or unbatched ``(L, dim)`` -> the same shape.

        ``mask (B, L)`` (or ``(L,)``) bool, True for real steps: the real steps' outputs equal TLAB on the sequence
        without the padded ones (TCN over the real steps, LSTM packed, both softmaxes masked); padded rows are 0
        and get no gradient.
        """
        if unbatched(x):
            return self.forward(x.unsqueeze(0), batch_of_one(mask)).squeeze(0)
        check_sequence("x", x, self.dim)
        if mask is None:
            return self._forward(x, None)
        order, prefix = compact(check_mask(mask, x))
        return restore(self._forward(zero_padded(gather_steps(x, order), prefix), prefix), order, mask)

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x (B, L, dim)`` whose real steps come first (``mask`` a prefix mask, or None)."""
        t = self.tcn(x, mask) if self.tcn is not None else None
        h = self.lstm(x, mask, compacted=True) if self.lstm is not None else None
        if self.use_attention:
            q_src = h if h is not None else x
            kv_src = t if t is not None else x
            q = self._heads(self.w_q(q_src))
            k = self._heads(self.w_k(kv_src))
            v = self._heads(self.w_v(kv_src))
            if self.attention == "global_local":
                o = tlab_attention(q, k, v, backend=self.backend, mask=None if mask is None else mask[:, None, :])
            else:
                p = self.attention_dropout if self.training and self.attention_dropout else 0.0
                keys = None if mask is None else (mask | ~mask.any(1, keepdim=True))[:, None, None, :]
                o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)
            o = self.w_o(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim))
            y = q_src + self.dropout(o)
        else:
            parts = [p for p in (h, t) if p is not None]
            y = sum(parts[1:], parts[0]) if parts else x
        return self.norm(y)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


def _rename_lstm_proj(state_dict, prefix, *_args) -> None:
    """0.1 stored the LSTM branch's projection as ``lstm_proj``; it now lives in the branch (``lstm.proj``)."""
    for key in [k for k in state_dict if k.startswith(prefix + "lstm_proj.")]:
        state_dict[prefix + "lstm.proj." + key[len(prefix + "lstm_proj."):]] = state_dict.pop(key)
