"""Parameter and FLOP accounting."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models.base import BACKBONES
from .ops._registry import using_backend


def _lstm_flops(m: nn.LSTM, batch: int, steps: int) -> int:
    """Multiply-adds x2 of an LSTM's gate matmuls (torch's flop counter does not see fused RNN kernels)."""
    total, in_dim = 0, m.input_size
    dirs = 2 if m.bidirectional else 1
    for _ in range(m.num_layers):
        total += dirs * 2 * batch * steps * 4 * m.hidden_size * (in_dim + m.hidden_size)
        in_dim = m.hidden_size * dirs
    return total


@dataclass
class ModelSummary:
    """Trainable/total parameters per top-level part, fusion totals and forward GFLOPs."""

    parts: dict[str, tuple[int, int]] = field(default_factory=dict)
    fusion_trainable: int = 0
    total_trainable: int = 0
    fusion_gflops: float = 0.0
    flops_batch: int = 1

    def __str__(self) -> str:
        rows = [f"{'part':<16}{'trainable':>14}{'total':>14}"]
        rows += [f"{name:<16}{t:>14,}{n:>14,}" for name, (t, n) in self.parts.items()]
        rows.append(f"fusion (all but the backbones): {self.fusion_trainable:,} trainable parameters "
                    f"({self.fusion_trainable / 1e6:.2f} M)")
        rows.append(f"fusion forward: {self.fusion_gflops:.3f} GFLOPs per instance "
                    f"(batch {self.flops_batch}, counted on cached backbone features)")
        return "\n".join(rows)


def model_summary(model: nn.Module, batch_size: int = 1) -> ModelSummary:
    """Count trainable parameters per part and the forward GFLOPs of the fusion part (everything after the
    backbones, AVGA included) on cached features of one window, per instance.

    FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, 2 per
    multiply-add) plus the LSTM gate matmuls, counted analytically: the counter sees a fused LSTM kernel (float32)
    as nothing and an unfused one (float64) as its matmuls, so the LSTMs run outside it and the count is the same in
    every dtype. The ops run on their references while counting (the counter cannot see inside a fused kernel), so
    the count is the same whatever backend would run.
    """
    s = ModelSummary(flops_batch=batch_size)
    for name, child in model.named_children():
        params = list(child.parameters())
        s.parts[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    s.total_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    s.fusion_trainable = sum(t for name, (t, _) in s.parts.items() if name not in BACKBONES)
    c = getattr(model, "config", None)
    if c is not None and hasattr(model, "forward_features"):
        regions = c.num_regions
        p = next(model.parameters())
        v = torch.randn(batch_size, c.seq_len, regions, c.video_dim, dtype=p.dtype, device=p.device)
        a = torch.randn(batch_size, c.seq_len, c.audio_dim, dtype=p.dtype, device=p.device)
        was_training = model.training
        model.eval()
        with torch.no_grad(), _lstms_uncounted(model), using_backend("reference"), \
                FlopCounterMode(display=False) as counter:
            model.forward_features(v, a)
        model.train(was_training)
        flops = counter.get_total_flops()
        flops += sum(_lstm_flops(m, batch_size, c.seq_len) for m in model.modules() if isinstance(m, nn.LSTM))
        s.fusion_gflops = flops / 1e9 / batch_size
    return s


@contextlib.contextmanager
def _lstms_uncounted(model: nn.Module):
    """Within the block, every nn.LSTM of ``model`` runs outside the active dispatch modes (the flop counter)."""
    from torch.utils._python_dispatch import _disable_current_modes

    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]

    def outside(forward):
        def run(*args, **kwargs):
            with _disable_current_modes():
                return forward(*args, **kwargs)
        return run
    for m in lstms:
        m.forward = outside(m.forward)
    try:
        yield
    finally:
        for m in lstms:
            del m.forward  # back to the class's forward
