"""Plots of per-frame predictions: the time trace (valence blue, arousal orange, ground truth dashed when given)
and the trajectory in valence-arousal space. matplotlib is imported when a plot is drawn."""
from __future__ import annotations

import torch

from .metrics import INVALID_LABEL


def plot(pred: torch.Tensor, gt: torch.Tensor | None, fps: float, stem: str, title: str | None = None) -> dict:
    """Write ``stem_trace.png`` and ``stem_va.png`` for predictions ``(frames, 2)`` (and labels ``(frames, 2)``,
    ``INVALID_LABEL`` where unknown) at ``fps``, titled ``title`` (e.g. the model and the video); the legends sit
    outside the axes, so they never cover data. Returns ``{"trace": path, "va": path}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = torch.arange(pred.shape[0]) / fps
    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.plot(t, pred[:, 0], color="tab:blue", label="valence")
    ax.plot(t, pred[:, 1], color="tab:orange", label="arousal")
    if gt is not None:
        g = gt.clone()
        g[g == INVALID_LABEL] = float("nan")
        ax.plot(t, g[:, 0], "--", color="tab:blue", label="valence (truth)")
        ax.plot(t, g[:, 1], "--", color="tab:orange", label="arousal (truth)")
    ax.set(xlabel="time (s)", ylabel="score", ylim=(-1.05, 1.05))
    if title:
        ax.set_title(title, fontsize=10, parse_math=False)  # a "$" in a file name is text
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    trace = stem + "_trace.png"
    fig.savefig(trace, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 5))
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.plot(pred[:, 0], pred[:, 1], color="tab:purple", lw=1, label="prediction")
    if gt is not None:
        ok = (gt != INVALID_LABEL).all(dim=1)
        ax.plot(gt[ok, 0], gt[ok, 1], "--", color="grey", lw=1, label="truth")
    ax.set(xlabel="valence", ylabel="arousal", xlim=(-1, 1), ylim=(-1, 1))
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    va = stem + "_va.png"
    fig.savefig(va, dpi=100)
    plt.close(fig)
    return {"trace": trace, "va": va}
