"""``aver-fast demo``: train the ``tiny`` presets on generated tensors and report CCC and step time.

Until the data pipeline lands this uses in-memory tensors, not media files: smooth random valence/arousal traces
drive a bright blob in the video (its brightness follows valence, its size arousal) and a band of energy in the
log-mel spectrogram (its height follows arousal, its level valence), plus noise. So both modalities carry signal.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .metrics import CCCLoss, ccc
from .models import MODELS, AVERConfig


def smooth_traces(n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, steps, 2)`` smooth random traces in about [-0.9, 0.9] (sum of a few low-frequency sinusoids)."""
    t = torch.linspace(0, 1, steps)
    freq = torch.rand(n, 1, 2, 3, generator=generator) * 2.0 + 0.3
    phase = torch.rand(n, 1, 2, 3, generator=generator) * 6.283
    amp = torch.rand(n, 1, 2, 3, generator=generator)
    x = (amp * torch.sin(6.283 * freq * t[None, :, None, None] + phase)).sum(-1)
    return 0.9 * x / x.abs().amax(dim=1, keepdim=True).clamp(min=1e-6)


def synthetic_batch(c: AVERConfig, n: int, generator: torch.Generator, noise: float = 0.3):
    """Inputs ``video (n, L, 3, T, S, S)``, ``audio (n, L, 1, M, F)`` and targets ``(n, L, 2)``."""
    y = smooth_traces(n, c.seq_len, generator)
    val, aro = y[..., 0], y[..., 1]
    s = c.image_size
    grid = torch.linspace(-1, 1, s)
    r2 = grid[None, :] ** 2 + grid[:, None] ** 2  # (S, S)
    radius = (0.35 + 0.25 * aro)[..., None, None]
    blob = torch.sigmoid((radius ** 2 - r2) * 40.0) * (0.5 + 0.5 * val)[..., None, None]  # (n, L, S, S)
    video = blob[:, :, None, None].expand(n, c.seq_len, 3, c.frames_per_clip, s, s).clone()
    video += noise * torch.randn(video.shape, generator=generator)
    mel = torch.linspace(0, 1, c.n_mels)
    centre = (0.5 + 0.35 * aro)[..., None]
    band = torch.exp(-((mel - centre) ** 2) / 0.01) * (1.0 + val[..., None])  # (n, L, M)
    audio = band[:, :, None, :, None].expand(n, c.seq_len, 1, c.n_mels, c.audio_frames).clone()
    audio += noise * torch.randn(audio.shape, generator=generator)
    return video, audio, y


def run_demo(out: str | Path = "aver-demo", steps: int = 150, batch_size: int = 8, seed: int = 0,
             models: tuple[str, ...] = ("aver", "jca", "lf"), log=print) -> dict:
    """Train each model's ``tiny`` preset for ``steps`` Adam steps and evaluate it on held-out generated data."""
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = AVERConfig.tiny()
    g_test = torch.Generator().manual_seed(seed + 1)
    test = synthetic_batch(c, 32, g_test)
    results: dict = {}
    for name in models:
        torch.manual_seed(seed)
        model = MODELS[name](c)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-5)
        loss_fn = CCCLoss()
        g = torch.Generator().manual_seed(seed + 2)
        model.train()
        t0 = time.perf_counter()
        for step in range(steps):
            video, audio, y = synthetic_batch(c, batch_size, g)
            loss = loss_fn(model(video, audio), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0:
                log(f"[{name}] step {step + 1}/{steps} loss {loss.item():.3f}")
        step_ms = 1000 * (time.perf_counter() - t0) / steps
        model.eval()
        with torch.no_grad():
            pred = model(test[0], test[1])
        v, a = (ccc(pred[..., i].flatten(), test[2][..., i].flatten()).item() for i in range(2))
        results[name] = {"clean": {"valence": v, "arousal": a, "mean": (v + a) / 2}, "train_step_ms": step_ms}
        log(f"[{name}] test CCC valence {v:.3f} arousal {a:.3f} mean {(v + a) / 2:.3f}; "
            f"train step {step_ms:.1f} ms (batch {batch_size})")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    log(f"wrote {out / 'results.json'}")
    return results
