"""``aver-fast extract-features``: run the frozen backbones once and cache each video's window features on disk
(``<video>.{video,audio,target,mask}.npy``, memory-mapped by ``train --features``). The public code reruns the
frozen backbones every epoch; with the cache an epoch only runs the fusion."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import AffWild2Dataset, AlignmentConfig
from .models import MODELS, AVERConfig


def extract_features(data: str, out: str, config: AVERConfig, alignment: AlignmentConfig, fusion: str = "aver",
                     weights: dict | None = None, batch_size: int = 4, device: str = "cpu", log=print,
                     faces: str = "none") -> dict:
    """Write the backbone region maps ``(windows, L, R, Cv)`` and audio features ``(windows, L, Ca)`` of every
    window, with targets and masks; returns ``{video: windows}`` (also in ``out/index.json``)."""
    if not config.freeze_backbones:
        raise ValueError("feature caching needs frozen backbones (AVERConfig.freeze_backbones=True): trainable "
                         "backbones change every step")
    model = MODELS[fusion](config).to(device).eval()
    if weights is not None:
        model.load_state_dict(weights)
    os.makedirs(out, exist_ok=True)
    ds = AffWild2Dataset(data, config=alignment, faces=faces)
    index: dict[str, int] = {}
    by_video: dict[str, list[int]] = {}
    for i, (v, _) in enumerate(ds.index):
        by_video.setdefault(ds.entries[v].name, []).append(i)
    for name, items in by_video.items():
        arrays: dict[str, np.ndarray] = {}
        for k0 in range(0, len(items), batch_size):
            batch = [ds[i] for i in items[k0:k0 + batch_size]]
            video = torch.stack([b["video"] for b in batch]).to(device)
            audio = torch.stack([b["audio"] for b in batch]).to(device)
            with torch.no_grad():
                regions, a = model.backbone_features(video, audio)
            parts = {"video": regions.cpu().numpy(), "audio": a.cpu().numpy(),
                     "target": torch.stack([b["target"] for b in batch]).numpy(),
                     "mask": torch.stack([b["mask"] for b in batch]).numpy()}
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
        index[name] = len(items)
        log(f"{name}: {len(items)} windows")
    with open(os.path.join(out, "index.json.tmp"), "w") as f:
        json.dump({"videos": index, "fusion": fusion}, f)
    os.replace(os.path.join(out, "index.json.tmp"), os.path.join(out, "index.json"))
    return index


class FeatureDataset(Dataset):
    """Windows of cached backbone features (``aver-fast extract-features``), memory-mapped per video."""

    def __init__(self, root: str, videos: list[str]) -> None:
        self.root = root
        with open(os.path.join(root, "index.json")) as f:
            index = json.load(f)
        missing = sorted(set(videos) - set(index["videos"]))
        if missing:
            raise ValueError(f"{root}: no cached features for {missing} (run aver-fast extract-features)")
        self.index = [(v, w) for v in videos for w in range(index["videos"][v])]
        self._maps: dict = {}

    def _arrays(self, video: str):
        if video not in self._maps:
            self._maps[video] = {k: np.load(os.path.join(self.root, f"{video}.{k}.npy"), mmap_mode="r")
                                 for k in ("video", "audio", "target", "mask")}
        return self._maps[video]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        video, w = self.index[i]
        arrays = self._arrays(video)
        return {k: torch.from_numpy(np.array(arrays[k][w])) for k in ("video", "audio", "target", "mask")} | {
            "video_name": video}
