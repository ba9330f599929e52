
import numpy as np
import pytest

from aver_fast.data import make_synthetic


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> str:
    """A small synthetic Aff-Wild2-format dataset written as real files (4 videos of 6 s at 64 px)."""
    root = str(tmp_path_factory.mktemp("synth"))
    make_synthetic(root, videos=4, seed=3, seconds=6.0, size=64)
    return root


def tone(seconds: float, sr: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x
