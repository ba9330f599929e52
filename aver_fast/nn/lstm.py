"""Bidirectional LSTM, batch-first, optionally residual (input concatenated and projected), with a learned initial
state and an L2-normalised output (the options the public code's LSTM layer uses)."""
from __future__ import annotations

import torch
from torch import nn

from ..cpu import autocast_without_native
from ._mask import check_mask, compact, gather_steps, restore, zero_padded


class BiLSTM(nn.Module):
    """``(B, L, input_size)`` -> ``(B, L, 2 * hidden)``, or ``(B, L, out_size)`` with ``out_size``.

    ``h = BiLSTM(x)`` (``hidden`` per direction, ``num_layers`` layers, ``dropout`` between layers); with
    ``out_size``: ``h = W [x; dropout_p(h)] + b`` (``project_dropout``); ``learned_init``: the initial hidden and
    cell states are parameters ``(2 · 2 · num_layers, hidden)`` (h rows first, shared over the batch) instead of
    zeros; ``normalize``: ``h / max(‖h‖₂, 1e-12)`` per step. ``mask (B, L)`` bool (True: a real step): each item
    runs packed over its real steps only (``pack_padded_sequence``), padded rows are 0. Under CPU autocast on a CPU
    without native arithmetic for the autocast dtype (:func:`aver_fast.cpu.autocast_without_native`) it runs in
    float32.

    The state dict keeps ``nn.LSTM``'s names under ``rnn.`` (``proj.``, ``init_state``); checkpoints of 0.1, which
    stored them without the ``rnn.`` prefix, still load.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int = 1, dropout: float = 0.0,
                 out_size: int | None = None, project_dropout: float = 0.0, learned_init: bool = False,
                 normalize: bool = False) -> None:
        super().__init__()
        if input_size < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(f"input_size, hidden and num_layers must be >= 1, got {input_size}, {hidden}, "
                             f"{num_layers}")
        self.input_size = input_size
        self.hidden = hidden
        self.num_layers = num_layers
        self.normalize = normalize
        self.rnn = nn.LSTM(input_size, hidden, num_layers, batch_first=True, bidirectional=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.proj = nn.Linear(input_size + 2 * hidden, out_size) if out_size is not None else None
        self.project_dropout = nn.Dropout(project_dropout)
        self.init_state = nn.Parameter(nn.init.xavier_uniform_(torch.empty(4 * num_layers, hidden))) \
            if learned_init else None
        self.out_size = out_size if out_size is not None else 2 * hidden
        self._register_load_state_dict_pre_hook(_rename_unprefixed_rnn_keys)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, compacted: bool = False) -> torch.Tensor:
        """Shape: x ``(B, L, input_size)``, mask ``(B, L)`` -> ``(B, L, out_size)``. ``compacted``: each item's
        real steps already come first (a caller that moved them there, e.g. :class:`~aver_fast.nn.TLAB`)."""
        if mask is not None:
            check_mask(mask, x)
        if autocast_without_native(x.device):  # oneDNN has no bf16 LSTM on such CPUs: float32, output included
            with torch.autocast("cpu", enabled=False):
                return self._masked(x.float(), mask, compacted)
        return self._masked(x, mask, compacted)

    def _masked(self, x: torch.Tensor, mask: torch.Tensor | None, compacted: bool) -> torch.Tensor:
        if mask is None:
            return self._forward(x)
        if compacted:
            return zero_padded(self._forward(zero_padded(x, mask), self._lengths(mask)), mask)
        order, prefix = compact(mask)
        return restore(self._forward(zero_padded(gather_steps(x, order), prefix), self._lengths(prefix)), order,
                       mask)

    @staticmethod
    def _lengths(prefix: torch.Tensor) -> torch.Tensor:
        """Real steps per item of a prefix mask, on the CPU (for packing); an item with none runs one zeroed step
        (its outputs are then set to 0)."""
        return prefix.sum(1).clamp(min=1).cpu()

    def _forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        state = None
        if self.init_state is not None:
            rows = 2 * self.num_layers  # directions x layers
            init = self.init_state.to(x.dtype).unsqueeze(1).repeat(1, x.shape[0], 1)  # a copy, never a view
            state = (init[:rows], init[rows:])
        if lengths is None:
            h = self.rnn(x, state)[0]
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h = nn.utils.rnn.pad_packed_sequence(self.rnn(packed, state)[0], batch_first=True,
                                                 total_length=x.shape[1])[0]
        if self.proj is not None:
            h = self.proj(self.project_dropout(torch.cat([x, h], dim=-1)))
        return nn.functional.normalize(h, dim=-1) if self.normalize else h


def _rename_unprefixed_rnn_keys(state_dict, prefix, *_args) -> None:
    """0.1 stored the LSTM's weights directly under the owner's name (``blstm.weight_ih_l0``)."""
    for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix):].startswith(("weight_", "bias_"))]:
        state_dict[prefix + "rnn." + key[len(prefix):]] = state_dict.pop(key)
