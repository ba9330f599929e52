"""``aver-fast predict VIDEO``: per-frame valence/arousal as CSV, and two plots: the time trace (valence blue,
arousal orange, ground truth dashed when given) and the trajectory in valence-arousal space."""
from __future__ import annotations

import os

import torch

from .data import AffWild2Dataset
from .evaluate import BATCH_SIZE, load_model, predict_frames
from .metrics import INVALID_LABEL


def predict_video(video: str, checkpoint: str, out: str, labels: str | None = None,
                  batch_size: int = BATCH_SIZE) -> dict:
    """Write ``out/<name>.csv`` (frame, time_s, valence, arousal) and the two plots; ``batch_size`` windows run at
    once (peak memory grows with it, not with the video's length)."""
    model, cfg, _ = load_model(checkpoint)
    ds = AffWild2Dataset.from_video(video, cfg.alignment(), labels=labels)
    rec = next(iter(predict_frames(model, ds, batch_size).values()))
    frames, gt = rec["frames"], rec["labels"] if labels else None
    os.makedirs(out, exist_ok=True)
    name = ds.entries[0].name
    csv_path = os.path.join(out, f"{name}.csv")
    with open(csv_path + ".tmp", "w") as f:
        f.write("frame,time_s,valence,arousal\n")
        for i, (v, a) in enumerate(frames.tolist()):
            f.write(f"{i},{i / ds.entries[0].fps:.3f},{v:.5f},{a:.5f}\n")
    os.replace(csv_path + ".tmp", csv_path)
    plots = plot(frames, gt, ds.entries[0].fps, os.path.join(out, name))
    return {"csv": csv_path, **plots}


def plot(pred: torch.Tensor, gt: torch.Tensor | None, fps: float, stem: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = torch.arange(pred.shape[0]) / fps
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(t, pred[:, 0], color="tab:blue", label="valence")
    ax.plot(t, pred[:, 1], color="tab:orange", label="arousal")
    if gt is not None:
        g = gt.clone()
        g[g == INVALID_LABEL] = float("nan")
        ax.plot(t, g[:, 0], "--", color="tab:blue", label="valence (truth)")
        ax.plot(t, g[:, 1], "--", color="tab:orange", label="arousal (truth)")
    ax.set(xlabel="time (s)", ylabel="score", ylim=(-1.05, 1.05))
    ax.legend(loc="upper right", ncol=2, fontsize=8)
    fig.tight_layout()
    trace = stem + "_trace.png"
    fig.savefig(trace, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.plot(pred[:, 0], pred[:, 1], color="tab:purple", lw=1, label="prediction")
    if gt is not None:
        ok = (gt != INVALID_LABEL).all(dim=1)
        ax.plot(gt[ok, 0], gt[ok, 1], "--", color="grey", lw=1, label="truth")
    ax.set(xlabel="valence", ylabel="arousal", xlim=(-1, 1), ylim=(-1, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    va = stem + "_va.png"
    fig.savefig(va, dpi=100)
    plt.close(fig)
    return {"trace": trace, "va": va}
