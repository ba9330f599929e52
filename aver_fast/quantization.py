"""``quantize_checkpoint``: a checkpoint whose backbones run in int8, calibrated on windows of a dataset prepared as
``predict`` and ``evaluate`` prepare them (faces, alignment), kept only when its predictions on held-out windows
agree with fp32 (CCC(fp32, int8) of valence and arousal at least ``min_ccc``)."""
from __future__ import annotations

import os
import time

import torch

from .checkpoint import CheckpointError, checkpoint_digest, load_checkpoint, save_checkpoint
from .int8 import engine_backbone, model_files
from .int8 import openvino as engine
from .metrics import va_ccc
from .models.base import BACKBONES, INFERENCE_CLIPS

MIN_CCC = 0.98  # CCC(fp32, int8) per dimension: the paper's models differ in the second decimal (0.02)
CALIBRATION_WINDOWS = 8  # windows whose sub-sequences calibrate the activation ranges (16 x 8 clips at paper size)
HELD_OUT_WINDOWS = 8  # windows of other videos that measure the accuracy
CONVERTED = {"video_backbone": "forward_map", "audio_backbone": "forward"}  # what each backbone's engine model runs
INPUT = {"video_backbone": "video", "audio_backbone": "audio"}  # its input in a dataset window


def _pick(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items`` (all when there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def _windows(ds, names: list[str], n: int) -> list[dict]:
    wanted = set(names)
    index = [i for i, (v, _) in enumerate(ds.index) if ds.entries[v].name in wanted]
    return [ds[i] for i in _pick(index, n)]


def _cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(x.flatten(1).double(), y.flatten(1).double(), dim=1)


def _features(model, windows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Region maps, audio features and predictions of ``windows`` (stacked), and the backbones' seconds per clip."""
    regions, audio, preds, seconds, clips = [], [], [], 0.0, 0
    with torch.inference_mode():
        for w in windows:
            t = time.perf_counter()
            r, a = model.subsequence_features(w["video"], w["audio"])
            seconds += time.perf_counter() - t
            clips += w["video"].shape[0]
            regions.append(r)
            audio.append(a)
            preds.append(model.forward_features(r[None], a[None], mask=w["steps"][None])[0])
    return torch.stack(regions), torch.stack(audio), torch.stack(preds), seconds / max(clips, 1)


def accuracy_report(fp32: tuple, int8: tuple, windows: list[dict]) -> dict:
    """fp32 against int8 on held-out windows: the backbone features' cosine similarity (per sub-sequence, min and
    mean) and max |difference| (with the fp32 features' max |value| for scale), and valence/arousal: CCC(fp32, int8)
    and max |difference| over the real steps, with the speed of each backbone pair."""
    steps = torch.stack([w["steps"] for w in windows])
    report: dict = {"held_out_windows": len(windows), "held_out_steps": int(steps.sum())}
    for i, what in enumerate(("video_features", "audio_features")):
        x, y = fp32[i].flatten(0, 1), int8[i].flatten(0, 1)
        cos = _cosine(x, y)
        report[what] = {"cosine_min": round(cos.min().item(), 5), "cosine_mean": round(cos.mean().item(), 5),
                        "max_abs_diff": round((x - y).abs().max().item(), 5),
                        "max_abs_fp32": round(x.abs().max().item(), 5)}
    ccc = va_ccc(int8[2].double(), fp32[2].double(), steps)
    diff = (int8[2] - fp32[2])[steps].abs()
    report["predictions"] = {"ccc_valence": round(ccc["valence"], 5), "ccc_arousal": round(ccc["arousal"], 5),
                             "max_abs_diff_valence": round(diff[:, 0].max().item(), 5),
                             "max_abs_diff_arousal": round(diff[:, 1].max().item(), 5)}
    report["backbones_ms_per_subsequence"] = {"fp32": round(fp32[3] * 1e3, 2), "int8": round(int8[3] * 1e3, 2)}
    return report


def _held_out(names: list[str], test: list[str]) -> list[str]:
    """The videos that measure the accuracy: the run's ``test`` videos among ``names`` (when some, not all, are),
    else every fourth one (at least one)."""
    held = [n for n in names if n in set(test)]
    return held if 0 < len(held) < len(names) else names[3::4] or names[-1:]


def _quantize_backbones(model: torch.nn.Module, calibration: list[dict]) -> dict[str, bytes]:
    """Quantize each backbone of ``model`` on the ``calibration`` windows' sub-sequences and put the engine's in its
    place; returns the checkpoint files of the int8 models."""
    files: dict[str, bytes] = {}
    for name in BACKBONES:
        inputs = torch.cat([w[INPUT[name]] for w in calibration])  # (clips, ...): every sub-sequence's input
        converted = engine.convert(getattr(model, name), CONVERTED[name], inputs[:1])
        xml, weights = engine.to_bytes(engine.quantize(converted, list(inputs.split(INFERENCE_CLIPS))))
        files |= dict(zip(model_files(name), (xml, weights), strict=True))
        setattr(model, name, engine_backbone(name, xml, weights))
    return files


def check_accuracy(report: dict, min_ccc: float) -> None:
    """Raise ValueError naming each dimension whose CCC(fp32, int8) in ``report`` is below ``min_ccc`` (or NaN)."""
    figures = {d: report["predictions"][f"ccc_{d}"] for d in ("valence", "arousal")}
    short = [f"{d} is {f:.4f}" for d, f in figures.items() if not f >= min_ccc]  # (NaN too)
    if short:
        raise ValueError(f"int8 is not accurate enough: CCC(fp32, int8) of {' and '.join(short)} < {min_ccc} on "
                         f"{report['held_out_steps']} held-out steps; nothing written (more calibration windows, or a "
                         f"lower --min-ccc if you accept it)")


def _check_out(out: str) -> None:
    """``out`` is new, or a quantized checkpoint (which it replaces): never another run's checkpoint."""
    if not os.path.lexists(out):
        return
    try:
        quantized = "int8" in load_checkpoint(out)[1]
    except CheckpointError:
        quantized = False
    if not quantized:
        raise ValueError(f"{out} exists and is not a checkpoint aver-fast quantize wrote: choose another --out")


def quantize_checkpoint(source: str, data: str, out: str, videos: int | None = None, faces: str | None = None,
                        min_ccc: float = MIN_CCC, calibration_windows: int = CALIBRATION_WINDOWS,
                        held_out_windows: int = HELD_OUT_WINDOWS, log=print) -> dict:
    """Write ``out`` (a checkpoint prefix, e.g. ``RUN/int8``): ``source``'s checkpoint with int8 backbones, and
    return its report. ``videos`` of ``data`` (default: all, else that many spread over the sorted names) are
    split: those of the checkpoint's test split are held out (without any: every fourth one, at least one), the
    others calibrate. Raises ValueError, writing nothing, when the int8 predictions' CCC against fp32 is below
    ``min_ccc`` (naming the figure)."""
    from .data import AffWild2Dataset
    from .inference import load_model
    from .training import TrainConfig

    if not 0 <= min_ccc <= 1:
        raise ValueError(f"min_ccc must be in [0, 1], got {min_ccc}")
    for what, n in (("videos", videos), ("calibration_windows", calibration_windows),
                    ("held_out_windows", held_out_windows)):
        if n is not None and n < (2 if what == "videos" else 1):
            raise ValueError(f"{what} must be at least {2 if what == 'videos' else 1}, got {n}")
    engine.require_quantizer()  # the extra is installed (else one line naming it), before any work
    model, state = load_model(source)
    if "int8" in state:
        raise ValueError(f"{source} is already quantized (int8): quantize its fp32 checkpoint "
                         f"{state['int8'].get('source', {}).get('checkpoint', '')}".rstrip())
    _check_out(out)
    cfg = TrainConfig.from_dict(state["config"], f"{source} config")
    ds = AffWild2Dataset(data, config=cfg.alignment(), faces=faces or cfg.faces)
    names = sorted({ds.entries[v].name for v, _ in ds.index})
    if len(names) < 2:
        raise ValueError(f"{data}: quantize needs windows of at least 2 videos (calibration and held out), found "
                         f"{len(names)} ({len(ds.index)} windows)")
    names = _pick(names, videos or len(names))
    held = _held_out(names, state.get("split", {}).get("test", []))
    calibration = _windows(ds, [n for n in names if n not in held], calibration_windows)
    held_out = _windows(ds, held, held_out_windows)
    log(f"quantize: calibrating on {len(calibration)} windows of {len(names) - len(held)} videos, measuring on "
        f"{len(held_out)} windows of {len(held)} held-out videos")

    fp32_backbones = {name: getattr(model, name) for name in BACKBONES}
    files = _quantize_backbones(model, calibration)
    int8 = _features(model, held_out)
    for name, module in fp32_backbones.items():
        setattr(model, name, module)
    report = accuracy_report(_features(model, held_out), int8, held_out)
    report |= {"calibration_windows": len(calibration), "calibration_videos": len(names) - len(held),
               "held_out_videos": held, "min_ccc": min_ccc}
    check_accuracy(report, min_ccc)
    info = {"engine": engine.ENGINE, "engine_version": engine.version(),
            "files": {name: model_files(name) for name in BACKBONES},
            "source": {"checkpoint": source, "digest": checkpoint_digest(source)}, "report": report}
    kept = {k: v for k, v in state.items() if k not in ("precision", "rng")}
    save_checkpoint(out, model, {**kept, "int8": info}, files)
    return {"checkpoint": out, **report}
