"""``aver-fast extract-features``: run the frozen backbones once and cache each video's window features on disk
(``<video>.{video,audio,target,mask,steps}.npy``, memory-mapped by ``train --features``). The public code reruns the
frozen backbones every epoch; with the cache an epoch only runs the fusion.

Each video's arrays are written under temporary names, renamed, and then ``<video>.features.json`` records the
window count and the settings' fingerprint (backbone weights, model and alignment settings): a rerun skips the
videos so recorded and redoes the rest. Under ``torchrun`` the videos are shared among the processes and rank 0
writes ``index.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import AffWild2Dataset, AlignmentConfig, media
from ..models import MODELS, AVERConfig
from .distributed import merged

RECORD = ".features.json"  # <video>.features.json: written last, it makes the video's arrays count as complete


def fingerprint(model: torch.nn.Module, config: AVERConfig, alignment: AlignmentConfig, fusion: str) -> str:
    """SHA-256 of what the cached features depend on: the backbones' weights, the model and alignment settings, and
    the version of what decoding gives."""
    h = hashlib.sha256(json.dumps([fusion, dataclasses.asdict(config), dataclasses.asdict(alignment),
                                   media.DECODING_VERSION],
                                  sort_keys=True, default=str).encode())
    for key, t in sorted(model.state_dict().items()):
        if key.startswith(("video_backbone.", "audio_backbone.")):
            h.update(key.encode())
            h.update(t.detach().to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()


def _complete(out: str, video: str, windows: int, digest: str) -> bool:
    """The video's arrays are all there with ``windows`` windows, and its record names the same settings."""
    try:
        with open(os.path.join(out, video + RECORD)) as f:
            record = json.load(f)
        if record != {"windows": windows, "fingerprint": digest}:
            return False
        return all(np.load(os.path.join(out, f"{video}.{kind}.npy"), mmap_mode="r").shape[0] == windows
                   for kind in KINDS)
    except (OSError, ValueError, RecursionError):
        return False


def check_ours(out: str, videos: list[str]) -> None:
    """Refuse, before any work, to replace what extract-features did not write: a link or a folder where a
    video's arrays, its record or the index go, or a ``<video>.features.json`` that is not a record of ours."""
    paths = [os.path.join(out, "index.json")] + [os.path.join(out, f"{v}.{kind}.npy") for v in videos
                                                 for kind in KINDS] + [os.path.join(out, v + RECORD) for v in videos]
    for path in paths:
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
            raise ValueError(f"{path} is a link or a folder where extract-features writes; move it away or choose "
                             "another --out")
    for v in videos:
        path = os.path.join(out, v + RECORD)
        if os.path.isfile(path) and not _is_record(path):
            raise ValueError(f"{path} exists and is not an extract-features record; move it away or choose "
                             "another --out")


def _is_record(path: str) -> bool:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and set(record) == {"windows", "fingerprint"}


def extract_features(data: str, out: str, config: AVERConfig, alignment: AlignmentConfig, fusion: str = "aver",
                     weights: dict | None = None, batch_size: int = 4, device: str = "cpu", log=print,
                     faces: str = "none", rank: int = 0, world: int = 1, seed: int = 0) -> dict:
    """Write the backbone region maps ``(windows, L, R, Cv)`` and audio features ``(windows, L, Ca)`` of every
    window, with targets and masks; returns ``{video: windows}`` (also in ``out/index.json``). Videos already
    complete with the same settings are kept; under ``torchrun`` (``world`` processes, this one ``rank``) each
    process takes every ``world``-th video, and the returned index covers them all. Without ``weights`` the
    backbones are initialised from ``seed``, so every run and every rank computes the same features."""
    if not config.freeze_backbones:
        raise ValueError("feature caching needs frozen backbones (AVERConfig.freeze_backbones=True): trainable "
                         "backbones change every step")
    with torch.random.fork_rng():  # the same random backbones in every process (torch seeds each one differently)
        torch.manual_seed(seed)
        model = MODELS[fusion](config).to(device).eval()
    if weights is not None:
        model.load_state_dict(weights)
    digest = fingerprint(model, config, alignment, fusion)
    os.makedirs(out, exist_ok=True)
    ds = AffWild2Dataset(data, config=alignment, faces=faces)
    index: dict[str, int] = {}
    by_video: dict[str, list[int]] = {}
    for i, (v, _) in enumerate(ds.index):
        by_video.setdefault(ds.entries[v].name, []).append(i)
    mine = sorted(by_video)[rank::world]
    check_ours(out, mine)
    for name in mine:
        items = by_video[name]
        if _complete(out, name, len(items), digest):
            index[name] = len(items)
            log(f"{name}: {len(items)} windows (already cached)")
            continue
        _forget(out, name)
        arrays: dict[str, np.ndarray] = {}
        for k0 in range(0, len(items), batch_size):
            batch = [ds[i] for i in items[k0:k0 + batch_size]]
            video = torch.stack([b["video"] for b in batch]).to(device)
            audio = torch.stack([b["audio"] for b in batch]).to(device)
            with torch.no_grad():
                regions, a = model.backbone_features(video, audio)
            parts = {"video": regions.cpu().numpy(), "audio": a.cpu().numpy(),
                     "target": torch.stack([b["target"] for b in batch]).numpy(),
                     "mask": torch.stack([b["mask"] for b in batch]).numpy(),
                     "steps": torch.stack([b["steps"] for b in batch]).numpy()}
            for key, value in parts.items():
                if key not in arrays:
                    path = os.path.join(out, f"{name}.{key}.npy.tmp")
                    arrays[key] = np.lib.format.open_memmap(path, mode="w+", dtype=value.dtype,
                                                            shape=(len(items),) + value.shape[1:])
                arrays[key][k0:k0 + len(batch)] = value
        for key, arr in arrays.items():
            arr.flush()
            del arr
            os.replace(os.path.join(out, f"{name}.{key}.npy.tmp"), os.path.join(out, f"{name}.{key}.npy"))
        with open(os.path.join(out, name + RECORD + ".tmp"), "w") as f:
            json.dump({"windows": len(items), "fingerprint": digest}, f)
        os.replace(os.path.join(out, name + RECORD + ".tmp"), os.path.join(out, name + RECORD))
        index[name] = len(items)
        log(f"{name}: {len(items)} windows")
    index = merged(index, world)
    index = {name: index[name] for name in sorted(index)}
    if rank == 0:
        with open(os.path.join(out, "index.json.tmp"), "w") as f:
            json.dump({"videos": index, "fusion": fusion, "fingerprint": digest}, f)
        os.replace(os.path.join(out, "index.json.tmp"), os.path.join(out, "index.json"))
    return index


def _forget(out: str, video: str) -> None:
    """Remove the record (checked to be ours by :func:`check_ours`) of a video about to be redone, so a run killed
    while it writes leaves it incomplete."""
    path = os.path.join(out, video + RECORD)
    if os.path.isfile(path):
        os.remove(path)


KINDS = ("video", "audio", "target", "mask", "steps")  # the arrays cached per video: <video>.<kind>.npy


class FeatureDataset(Dataset):
    """Windows of cached backbone features (``aver-fast extract-features``), memory-mapped per video. The index and
    every array's header are checked when the dataset is made (each array holds the index's count of windows, the
    videos agree on shapes), so a damaged cache fails before training, naming the file."""

    def __init__(self, root: str, videos: list[str]) -> None:
        self.root = root
        index_path = os.path.join(root, "index.json")
        try:
            with open(index_path) as f:
                index = json.load(f)
            counts = index["videos"]
            assert isinstance(counts, dict) and all(type(n) is int and n >= 0 for n in counts.values())
        except FileNotFoundError:
            raise ValueError(f"{index_path} not found: run aver-fast extract-features first") from None
        except (OSError, ValueError, KeyError, TypeError, AssertionError, RecursionError):
            raise ValueError(f"{index_path} is damaged (expected {{\"videos\": {{name: windows}}}})") from None
        missing = sorted(set(videos) - set(counts))
        if missing:
            raise ValueError(f"{root}: no cached features for {missing} (run aver-fast extract-features)")
        self._maps: dict = {}
        shapes: dict[str, tuple] = {}
        for v in videos:
            for kind, arr in self._arrays(v).items():
                path = os.path.join(root, f"{v}.{kind}.npy")
                if arr.shape[0] != counts[v]:
                    raise ValueError(f"{path} holds {arr.shape[0]} windows but {index_path} says {counts[v]}")
                if kind == "steps" and arr.dtype != np.bool_:
                    raise ValueError(f"{path} holds {arr.dtype}, not the bool padding mask of the steps")
                if shapes.setdefault(kind, arr.shape[1:]) != arr.shape[1:]:
                    raise ValueError(f"{path} has windows of shape {arr.shape[1:]}, other videos {shapes[kind]}")
        self.index = [(v, w) for v in videos for w in range(counts[v])]

    def _arrays(self, video: str):
        if video not in self._maps:
            maps = {}
            for kind in KINDS:
                path = os.path.join(self.root, f"{video}.{kind}.npy")
                if kind == "steps" and not os.path.exists(path) and os.path.exists(path.replace(".steps.", ".mask.")):
                    raise ValueError(f"{path} not found: the cache was written by an older aver_fast, without the "
                                     "steps' padding mask; rerun aver-fast extract-features into a new folder")
                try:
                    maps[kind] = np.load(path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise ValueError(f"{path}: cannot read cached features ({e})") from None
            self._maps[video] = maps
        return self._maps[video]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        video, w = self.index[i]
        arrays = self._arrays(video)
        return {k: torch.from_numpy(np.array(arrays[k][w])) for k in KINDS} | {"video_name": video}
