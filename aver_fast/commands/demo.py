"""``aver-fast demo``: generate a small synthetic benchmark as real media files, train the ``tiny`` presets of AVER,
JCA and leader-follower on it through the same loader as Aff-Wild2, and evaluate them on clean and noisy test
videos. CPU only, no network."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from ..checkpoint import save_run
from ..config import PRESETS, TrainConfig
from ..data import AffWild2Dataset, make_synthetic, parse_condition, split_videos
from ..inference import predict_frames
from ..metrics import CCCLoss, va_ccc
from ..models import MODELS
from ..plots import plot

CONDITIONS = ("clean", "babble-5db", "occlusion", "dual")
PRESET = PRESETS["tiny"]
HELP = "write a synthetic benchmark, train the tiny AVER/JCA/LF presets on it and print test CCC on clean and noisy " \
       "conditions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="aver-demo", help="output folder: data/, results.json, timings.json "
                                                      "(default: aver-demo/)")
    p.add_argument("--steps", type=int, default=200, help="training steps per model (default: 200)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    p.add_argument("--videos", type=int, default=10, help="synthetic videos to generate (default: 10)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each synthetic video (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")


def _load(root: str, videos: list[str], stride: int, condition: str = "clean", seed: int = 0) -> dict:
    """Every window of ``videos`` as stacked tensors (the demo's data fits in memory)."""
    ds = AffWild2Dataset(root, videos=videos, config=PRESET.alignment(window_stride=stride),
                         condition=parse_condition(condition), seed=seed)
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in ("video", "audio", "target", "mask")}


def step_ccc(model: torch.nn.Module, data: dict) -> dict:
    """CCC of valence and arousal over all valid steps of in-memory windows, and their mean."""
    model.eval()
    with torch.no_grad():
        pred = model(data["video"], data["audio"])
    return va_ccc(pred, data["target"], data["mask"])


def run_demo(out: str | Path = "aver-demo", steps: int = 200, batch_size: int = 16, seed: int = 0,
             models: tuple[str, ...] = ("aver", "jca", "lf"), videos: int = 10, seconds: float = 20.0,
             log=print) -> dict:
    out = Path(out)
    root = str(out / "data")
    if not os.path.isfile(os.path.join(root, "synthetic.json")):
        log(f"writing a synthetic benchmark ({videos} videos of {seconds:g} s) to {root}")
        make_synthetic(root, videos=videos, seed=seed, seconds=seconds, size=64)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, "annotations")))
    split = split_videos(names, seed=seed)
    train = _load(root, split["train"], stride=16)
    tests = {c: _load(root, split["test"], stride=128, condition=c, seed=seed) for c in CONDITIONS}
    log(f"{train['video'].shape[0]} training windows from {len(split['train'])} videos; "
        f"test videos {split['test']}")
    cfg = PRESET.model_config()
    results, timings = {}, {}
    for name in models:
        torch.manual_seed(seed)
        model = MODELS[name](cfg)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
        loss_fn = CCCLoss()
        g = torch.Generator().manual_seed(seed)
        model.train()
        t0 = time.perf_counter()
        for step in range(steps):
            idx = torch.randint(0, train["video"].shape[0], (batch_size,), generator=g)
            loss = loss_fn(model(train["video"][idx], train["audio"][idx]), train["target"][idx], train["mask"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 50 == 0:
                log(f"[{name}] step {step + 1}/{steps} loss {loss.item():.3f}")
        timings[name] = {"train_step_ms": 1000 * (time.perf_counter() - t0) / max(steps, 1), "batch": batch_size}
        results[name] = {c: step_ccc(model, data) for c, data in tests.items()}
        # a checkpoint that `aver-fast evaluate` / `predict` can load, and plots of the first test video
        run = TrainConfig(data=root, out=str(out / "checkpoints"), fusion=name, preset="tiny", seed=seed)
        os.makedirs(run.out, exist_ok=True)
        save_run(os.path.join(run.out, name), model, run, split, epoch=0, best=results[name]["clean"])
        ds = AffWild2Dataset(root, split["test"][:1], PRESET.alignment())
        rec = next(iter(predict_frames(model.eval(), ds).values()))
        os.makedirs(out / "plots", exist_ok=True)
        plot(rec["frames"], rec["labels"], ds.entries[0].fps, str(out / "plots" / f"{name}_{ds.entries[0].name}"),
             title=f"{name} (tiny, demo) on {ds.entries[0].name}")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    (out / "conditions.json").write_text(json.dumps({c: parse_condition(c).params for c in CONDITIONS}, indent=2))
    rows = ["| model | " + " | ".join(CONDITIONS) + " | train step |", "|---|" + "---|" * (len(CONDITIONS) + 1)]
    for name in models:
        cells = [f"{results[name][c]['mean']:.3f} ({results[name][c]['valence']:.2f}/{results[name][c]['arousal']:.2f})"
                 for c in CONDITIONS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {timings[name]['train_step_ms']:.0f} ms |")
    log("test CCC, mean (valence/arousal):\n" + "\n".join(rows))
    log(f"wrote {out / 'results.json'}, checkpoints/ and plots/")
    return results


def run(args: argparse.Namespace) -> int:
    models = tuple(m for m in args.models.split(",") if m)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    run_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed, models=models,
             videos=args.videos, seconds=args.seconds)
    return 0
