"""The feature cache (aver_fast/training/features.py): a damaged index or array fails when the dataset is made,
naming the file, not mid-epoch."""
import json

import numpy as np
import pytest

from aver_fast.training.features import KINDS, FeatureDataset


def cache(root, windows=3, video="v"):
    shapes = {"video": (4, 5, 6), "audio": (4, 6), "target": (4, 2), "mask": (4,), "steps": (4,)}
    for kind in KINDS:
        np.save(root / f"{video}.{kind}.npy", np.zeros((windows, *shapes[kind]), bool if kind == "steps"
                                                       else np.float32))
    (root / "index.json").write_text(json.dumps({"videos": {video: windows}, "fusion": "aver"}))


def test_a_good_cache_reads(tmp_path):
    cache(tmp_path)
    ds = FeatureDataset(str(tmp_path), ["v"])
    assert len(ds) == 3 and ds[2]["video"].shape == (4, 5, 6) and ds[0]["video_name"] == "v"


def test_an_index_larger_than_its_arrays_fails_at_once(tmp_path):
    """Was: an IndexError mid-epoch."""
    cache(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"videos": {"v": 5}}))
    with pytest.raises(ValueError, match=r"v.video.npy holds 3 windows but .*index.json says 5"):
        FeatureDataset(str(tmp_path), ["v"])


@pytest.mark.parametrize("index", ["[" * 10000, "{}", '{"videos": {"v": -1}}', '{"videos": {"v": "3"}}'],
                         ids=["nested", "no-videos", "negative", "string"])
def test_a_damaged_index_is_named(tmp_path, index):
    cache(tmp_path)
    (tmp_path / "index.json").write_text(index)
    with pytest.raises(ValueError, match="index.json is damaged"):
        FeatureDataset(str(tmp_path), ["v"])


def test_a_missing_or_mismatched_array_is_named(tmp_path):
    cache(tmp_path)
    cache(tmp_path, video="w")
    (tmp_path / "index.json").write_text(json.dumps({"videos": {"v": 3, "w": 3}}))
    np.save(tmp_path / "w.audio.npy", np.zeros((3, 4, 7), np.float32))
    with pytest.raises(ValueError, match=r"w.audio.npy has windows of shape \(4, 7\), other videos \(4, 6\)"):
        FeatureDataset(str(tmp_path), ["v", "w"])
    (tmp_path / "w.audio.npy").unlink()
    with pytest.raises(ValueError, match="w.audio.npy: cannot read cached features"):
        FeatureDataset(str(tmp_path), ["v", "w"])
    with pytest.raises(ValueError, match="index.json not found"):
        FeatureDataset(str(tmp_path / "nowhere"), ["v"])


def test_a_cache_without_the_padding_mask_says_to_rebuild(tmp_path):
    """Caches written before the steps' padding mask existed are refused by name, never read as unmasked."""
    cache(tmp_path)
    (tmp_path / "v.steps.npy").unlink()
    with pytest.raises(ValueError, match="written by an older aver_fast, without the steps' padding mask"):
        FeatureDataset(str(tmp_path), ["v"])
    np.save(tmp_path / "v.steps.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"v.steps.npy holds float32, not the bool padding mask"):
        FeatureDataset(str(tmp_path), ["v"])
