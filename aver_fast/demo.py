"""The demo (``aver-fast demo``): generate a small synthetic benchmark as real media files, train the ``tiny``
presets of AVER, JCA and leader-follower on it through the same loader as Aff-Wild2 with the training steps of
:mod:`aver_fast.training`, and evaluate them on clean and noisy test videos. CPU only, no network."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from .checkpoint import save_run
from .data import AffWild2Dataset, make_synthetic, parse_condition, split_videos
from .models import MODELS
from .plots import plot
from .streaming import predict_frames
from .training import PRESETS, TrainConfig, TrainingDiverged, validate
from .training.steps import backward

DEMO_CONDITIONS = ("clean", "babble-5db", "occlusion", "dual")
PRESET = PRESETS["tiny"]
DEMO_LR = 2e-3  # the demo's few hundred steps (the paper's 1e-4 is for 30 epochs of Aff-Wild2)
CPU = torch.device("cpu")


def _load(root: str, videos: list[str], stride: int, condition: str = "clean", seed: int = 0) -> dict:
    """Every window of ``videos`` as stacked tensors (the demo's data fits in memory)."""
    ds = AffWild2Dataset(root, videos=videos, config=PRESET.alignment(window_stride=stride),
                         condition=parse_condition(condition), seed=seed)
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in ("video", "audio", "target", "mask", "steps")}


def train_steps(name: str, train: dict, steps: int, batch_size: int, seed: int, log) -> tuple[torch.nn.Module, dict]:
    """The tiny preset of model ``name`` after ``steps`` of :func:`aver_fast.training.steps.backward` on random
    batches of the in-memory ``train`` windows (Adam, lr 2e-3: the demo's few hundred steps), and its timing."""
    torch.manual_seed(seed)
    model = MODELS[name](PRESET.model_config())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=DEMO_LR, weight_decay=TrainConfig.weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, train["video"].shape[0], (batch_size,), generator=g)
        loss, why = backward(model, {k: v[idx] for k, v in train.items()}, CPU, opt, params)
        if why is not None:
            raise TrainingDiverged(f"[{name}] demo training diverged at step {step + 1}: {why}")
        opt.step()
        if (step + 1) % 50 == 0:
            log(f"[{name}] step {step + 1}/{steps} loss {loss.item():.3f}")
    return model, {"train_step_ms": 1000 * (time.perf_counter() - t0) / max(steps, 1), "batch": batch_size}


def save_and_plot(name: str, model: torch.nn.Module, root: str, out: Path, split: dict, seed: int,
                  clean: dict) -> None:
    """A checkpoint that ``aver-fast evaluate``/``predict`` can load, and plots of the first test video."""
    run = TrainConfig(data=root, out=str(out / "checkpoints"), fusion=name, preset="tiny", seed=seed)
    os.makedirs(run.out, exist_ok=True)
    save_run(os.path.join(run.out, name), model, run, split, epoch=0, best=clean)
    ds = AffWild2Dataset(root, split["test"][:1], PRESET.alignment())
    rec = next(iter(predict_frames(model.eval(), ds).values()))
    os.makedirs(out / "plots", exist_ok=True)
    plot(rec["frames"], rec["labels"], ds.entries[0].fps, str(out / "plots" / f"{name}_{ds.entries[0].name}"),
         title=f"{name} (tiny, demo) on {ds.entries[0].name}")


def table(results: dict, timings: dict) -> str:
    """Test CCC per model and condition, mean (valence/arousal), and the training step time, as markdown."""
    rows = ["| model | " + " | ".join(DEMO_CONDITIONS) + " | train step |",
            "|---|" + "---|" * (len(DEMO_CONDITIONS) + 1)]
    for name, per in results.items():
        cells = [f"{per[c]['mean']:.3f} ({per[c]['valence']:.2f}/{per[c]['arousal']:.2f})"
                 for c in DEMO_CONDITIONS]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {timings[name]['train_step_ms']:.0f} ms |")
    return "\n".join(rows)


def run_demo(out: str | Path = "aver-demo", steps: int = 200, batch_size: int = 16, seed: int = 0,
             models: tuple[str, ...] = ("aver", "jca", "lf"), videos: int = 10, seconds: float = 20.0,
             log=print) -> dict:
    """Write the synthetic benchmark (once), train each of ``models`` and score it on the test videos under each
    condition; writes ``results.json``, ``timings.json``, ``conditions.json``, checkpoints and plots to ``out``."""
    out = Path(out)
    root = str(out / "data")
    if not os.path.isfile(os.path.join(root, "synthetic.json")):
        log(f"writing a synthetic benchmark ({videos} videos of {seconds:g} s) to {root}")
        make_synthetic(root, videos=videos, seed=seed, seconds=seconds, size=64)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, "annotations")))
    split = split_videos(names, seed=seed)
    train = _load(root, split["train"], stride=16)
    tests = {c: _load(root, split["test"], stride=128, condition=c, seed=seed) for c in DEMO_CONDITIONS}
    log(f"{train['video'].shape[0]} training windows from {len(split['train'])} videos; "
        f"test videos {split['test']}")
    results, timings = {}, {}
    for name in models:
        model, timings[name] = train_steps(name, train, steps, batch_size, seed, log)
        results[name] = {c: validate(model, [data], CPU) for c, data in tests.items()}
        save_and_plot(name, model, root, out, split, seed, results[name]["clean"])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    (out / "conditions.json").write_text(json.dumps({c: parse_condition(c).params for c in DEMO_CONDITIONS}, indent=2))
    log("test CCC, mean (valence/arousal):\n" + table(results, timings))
    log(f"wrote {out / 'results.json'}, checkpoints/ and plots/")
    return results
