"""Aff-Wild2 valence/arousal annotation files: header ``valence,arousal``, one ``v,a`` line per frame, -5 = invalid."""
from __future__ import annotations

import os

import numpy as np

from ..metrics import INVALID_LABEL as INVALID
from .errors import MediaError


def read_va(path: str | os.PathLike) -> np.ndarray:
    """``(frames, 2)`` float32 [valence, arousal]; invalid frames keep the value -5."""
    if not os.path.isfile(path):
        raise MediaError(path, "annotation file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark before the header is accepted
            lines = [ln.strip() for ln in f if ln.strip()]
    except UnicodeDecodeError as e:
        raise MediaError(path, f"annotation file is not UTF-8 text (byte {e.start}: {e.reason}); is it a "
                               "binary file or in another encoding?") from None
    if not lines or lines[0].replace(" ", "").lower() != "valence,arousal":
        raise MediaError(path, "annotation file must start with the header 'valence,arousal'")
    rows = []
    for i, ln in enumerate(lines[1:], start=2):
        parts = ln.split(",")
        try:
            v, a = float(parts[0]), float(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise MediaError(path, f"line {i} is not 'valence,arousal' numbers: {ln!r}") from None
        for x in (v, a):
            if x != INVALID and not -1.0 <= x <= 1.0:
                raise MediaError(path, f"line {i}: value {x} is outside [-1, 1] (and not the invalid marker -5)")
        rows.append((v, a))
    if not rows:
        raise MediaError(path, "annotation file has no frames")
    return np.asarray(rows, dtype=np.float32)


def write_va(path: str | os.PathLike, va: np.ndarray) -> None:
    """Write ``(frames, 2)`` values in the Aff-Wild2 format (atomically)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write("valence,arousal\n")
        for v, a in np.asarray(va, dtype=np.float64):
            f.write(f"{v:.6g},{a:.6g}\n")
    os.replace(tmp, path)
