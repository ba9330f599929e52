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


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from aver_fast.data import make_synthetic

    root = tmp_path_factory.mktemp("feat_data")
    make_synthetic(str(root), videos=3, seed=1, seconds=4.0, size=32)
    return str(root)


def _extract(data, out, weights=None, **kwargs):
    from aver_fast.data import AlignmentConfig
    from aver_fast.models import AVERConfig
    from aver_fast.training.features import extract_features

    return extract_features(data, str(out), AVERConfig.tiny(freeze_backbones=True), AlignmentConfig.tiny(),
                            weights=weights, log=lambda *_: None, **kwargs)


def test_a_rerun_keeps_complete_videos_and_redoes_the_rest(tiny_data, tmp_path):
    """A video counts as cached only with its record (written last) naming the same settings: an interrupted
    video, or features of other backbone weights, are redone; complete ones are kept untouched."""
    from aver_fast.models import AVER, AVERConfig

    index = _extract(tiny_data, tmp_path)
    assert len(index) == 3 and json.loads((tmp_path / "index.json").read_text())["videos"] == index
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    (tmp_path / "synth_001.features.json").unlink()  # as if killed while synth_001 was written
    assert _extract(tiny_data, tmp_path) == index
    for p in tmp_path.glob("*.npy"):
        assert (p.stat().st_mtime_ns == stamps[p.name]) == (not p.name.startswith("synth_001")), p.name
    torch_state = AVER(AVERConfig.tiny(freeze_backbones=True)).state_dict()
    other = {k: v + 1 if k.startswith("video_backbone.") and v.is_floating_point() else v
             for k, v in torch_state.items()}
    before = np.load(tmp_path / "synth_000.video.npy")
    _extract(tiny_data, tmp_path, weights=other)  # other weights: every video redone
    assert not np.array_equal(np.load(tmp_path / "synth_000.video.npy"), before)


def test_a_new_decoding_version_redoes_every_video(tiny_data, tmp_path, monkeypatch):
    """Features decoded by an older release are stale even with the same weights and settings."""
    from aver_fast.data import media

    _extract(tiny_data, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    monkeypatch.setattr(media, "DECODING_VERSION", media.DECODING_VERSION + 1)
    _extract(tiny_data, tmp_path)
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in tmp_path.glob("*.npy"))


def test_torchrun_shares_the_videos(tiny_data, tmp_path):
    """Two gloo ranks write each video once; the cache equals a single process's."""
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["extract-features", "--data", tiny_data, "--preset", "tiny"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo)
    for out, launcher in ((one, []), (two, ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                            "--master_port", str(29700 + os.getpid() % 1000)])):
        res = subprocess.run([sys.executable, *launcher, "-m", "aver_fast", *args, "--out", str(out)],
                             capture_output=True, text=True, timeout=600, cwd=repo, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((two / "index.json").read_text()) == json.loads((one / "index.json").read_text())
    for p in one.glob("*.npy"):
        np.testing.assert_array_equal(np.load(two / p.name), np.load(p))


def test_nothing_it_did_not_write_is_replaced(tiny_data, tmp_path):
    """A user's file named like a record, or a link where an array goes, stops the run before any work; the victims
    (made here, in the test's own folder) are untouched."""
    import os

    out = tmp_path / "out"
    out.mkdir()
    mine = out / "synth_000.features.json"
    mine.write_text("my notes")
    with pytest.raises(ValueError, match=r"synth_000.features.json exists and is not an extract-features record"):
        _extract(tiny_data, out)
    assert mine.read_text() == "my notes" and not list(out.glob("*.npy"))
    mine.unlink()
    victim = tmp_path / "victim.npy"
    victim.write_bytes(b"keep")
    os.symlink(victim, out / "synth_001.audio.npy")
    with pytest.raises(ValueError, match=r"synth_001.audio.npy is a link or a folder where extract-features writes"):
        _extract(tiny_data, out)
    assert victim.read_bytes() == b"keep" and os.path.islink(out / "synth_001.audio.npy")
