import os
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aver_fast.data import (
    AffWild2Dataset,
    AlignmentConfig,
    MediaError,
    parse_condition,
    read_split_list,
    read_va,
    split_videos,
    write_va,
)

TINY = AlignmentConfig.tiny()


def test_items_have_model_shapes_labels_and_masks(synth_root):
    ds = AffWild2Dataset(synth_root, config=TINY)
    assert ds.summary.videos == 4 and len(ds) == 4 * 2  # 180 frames -> windows at 0 and 128
    item = ds[1]  # the padded second window of the first video
    assert item["video"].shape == (8, 3, 4, 32, 32) and item["audio"].shape == (8, 1, 32, 24)
    assert item["target"].shape == (8, 2) and item["mask"].dtype == torch.bool
    labels = read_va(os.path.join(synth_root, "annotations", item["video_name"] + ".txt"))
    ends = item["start"] + (np.arange(8) + 1) * 16 - 1
    inside = ends < 180
    assert not item["mask"][~inside].any()
    valid = inside & (labels[np.minimum(ends, 179)] != -5).all(axis=1)
    np.testing.assert_array_equal(item["mask"].numpy(), valid)
    np.testing.assert_allclose(item["target"][inside].numpy(), labels[ends[inside]])
    assert torch.isfinite(item["video"]).all() and torch.isfinite(item["audio"]).all()
    # the model's padding mask: the steps that hold frames of the video (the one cut by the end included)
    starts = item["start"] + np.arange(8) * 16
    np.testing.assert_array_equal(item["steps"].numpy(), starts < 180)
    assert item["steps"].sum() == 4 and not (item["mask"] & ~item["steps"]).any()
    assert ds[0]["steps"].all()


def test_paper_config_shapes(synth_root):
    item = AffWild2Dataset(synth_root, videos=["synth_000"])[0]
    assert item["video"].shape == (16, 3, 8, 112, 112) and item["audio"].shape == (16, 1, 128, 104)


def test_public_code_audio_front_end(synth_root):
    """64 HTK bands without area normalisation, no noise reduction, (dB + 14.8) / 19.895."""
    from aver_fast.data.preprocess import audio_steps
    from aver_fast.ops import log_mel

    cfg = AlignmentConfig.public_code()
    ds = AffWild2Dataset(synth_root, videos=["synth_000"], config=cfg)
    audio = ds[0]["audio"]
    assert audio.shape == (16, 1, 64, 104)
    segments = torch.randn(3, cfg.segment_samples)
    db = log_mel(segments, sample_rate=44100, n_fft=1024, win_length=882, hop_length=441, n_mels=64,
                 mel_scale="htk", norm=None)
    torch.testing.assert_close(audio_steps(segments, cfg)[:, 0], (db + 14.8) / 19.895)
    slaney = AffWild2Dataset(synth_root, videos=["synth_000"], config=AlignmentConfig(n_mels=64, noise_reduction=False,
                                                                                    db_mean=-14.8, db_std=19.895))
    assert not torch.allclose(slaney[0]["audio"], audio), "the mel scale and norm are used"


def test_deterministic_and_safe_with_worker_processes(synth_root):
    ds = AffWild2Dataset(synth_root, config=TINY, condition=parse_condition("white:snr_db=5+occlusion:fraction=0.5"),
                         seed=7)
    a = ds[3]
    assert torch.equal(a["audio"], ds[3]["audio"]) and torch.equal(a["video"], ds[3]["video"])
    serial = list(DataLoader(ds, batch_size=3, num_workers=0))
    parallel = list(DataLoader(ds, batch_size=3, num_workers=2, timeout=120))  # a hang fails instead of waiting
    for s, p in zip(serial, parallel, strict=True):
        assert torch.equal(s["video"], p["video"]) and torch.equal(s["audio"], p["audio"])
        assert torch.equal(s["target"], p["target"]) and s["video_name"] == p["video_name"]
    other_seed = AffWild2Dataset(synth_root, config=TINY, condition=ds.condition, seed=8)[3]
    assert not torch.equal(a["audio"], other_seed["audio"])


def test_babble_mixes_other_videos(synth_root):
    clean = AffWild2Dataset(synth_root, config=TINY)[0]["audio"]
    noisy = AffWild2Dataset(synth_root, config=TINY, condition=parse_condition("babble-5db"))[0]["audio"]
    assert not torch.allclose(clean, noisy)


def make_bad_copy(src, dst):
    shutil.copytree(src, dst)
    ann, vid = os.path.join(dst, "annotations"), os.path.join(dst, "videos")
    labels = read_va(os.path.join(ann, "synth_001.txt"))
    write_va(os.path.join(ann, "synth_001.txt"), labels[:100])  # length disagrees with the video
    os.remove(os.path.join(vid, "synth_002.mp4"))  # missing video
    with open(os.path.join(vid, "synth_003.mp4"), "wb") as f:
        f.write(b"corrupt" * 1000)  # corrupt video
    with open(os.path.join(ann, "synth_004.txt"), "w") as f:
        f.write("valence,arousal\n-5,-5\n")  # no valid labels (and no video)


def test_bad_inputs_raise_naming_the_file_or_are_skipped_and_counted(synth_root, tmp_path):
    bad = str(tmp_path / "bad")
    make_bad_copy(synth_root, bad)
    with pytest.raises(MediaError, match="synth_001.txt.*has 100 frames"):
        AffWild2Dataset(bad, config=TINY)
    ds = AffWild2Dataset(bad, config=TINY, skip_bad=True)
    assert ds.summary.videos == 1 and len(ds.summary.skipped) == 4
    problems = " ".join(f"{p}: {q}" for p, q in ds.summary.skipped)
    for needle in ("synth_001.txt", "synth_002.mp4", "synth_003.mp4", "synth_004"):
        assert needle in problems
    ds_tol = AffWild2Dataset(bad, videos=["synth_001"], config=TINY, length_tolerance=100)
    assert ds_tol.entries[0].frames == 100
    with pytest.raises(MediaError, match="no usable video"):
        AffWild2Dataset(bad, videos=["synth_002"], config=TINY, skip_bad=True)
    with pytest.raises(MediaError, match="annotation folder not found"):
        AffWild2Dataset(str(tmp_path / "nowhere"))


def test_splits_by_video(tmp_path):
    names = [f"v{i}" for i in range(10)]
    s = split_videos(names, seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(sum(s.values(), [])) == sorted(names)
    assert s == split_videos(list(reversed(names)), seed=1) and s != split_videos(names, seed=2)
    (tmp_path / "train.txt").write_text("v1.mp4\nv2\n\n")
    assert read_split_list(tmp_path / "train.txt") == ["v1", "v2"]
    with pytest.raises(ValueError, match="sum to 1"):
        split_videos(names, fractions=(0.5, 0.2, 0.2))


def test_undecodable_annotations_and_non_finite_audio_are_found_at_discovery(synth_root, tmp_path):
    """Non-UTF-8 annotation and a float .wav with NaN samples: MediaError naming the file at discovery, or skipped
    and listed with skip_bad."""
    import soundfile

    from aver_fast.data import load_audio

    root = str(tmp_path / "d")
    shutil.copytree(synth_root, root)
    with open(os.path.join(root, "annotations", "synth_000.txt"), "wb") as f:
        f.write("valence,arousal\n0.1,0.2\n# café\n".encode("latin-1"))
    wave = load_audio(os.path.join(root, "videos", "synth_001.mp4"), 16000).samples.numpy()
    wave[100] = np.nan
    soundfile.write(os.path.join(root, "videos", "synth_001.wav"), wave, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="synth_000.txt.*not UTF-8"):
        AffWild2Dataset(root, config=TINY)
    with pytest.raises(MediaError, match="synth_001.wav.*NaN/Inf"):
        AffWild2Dataset(root, videos=["synth_001"], config=TINY)
    ds = AffWild2Dataset(root, config=TINY, skip_bad=True)
    assert ds.summary.videos == 2
    assert sorted(os.path.basename(p) for p, _ in ds.summary.skipped) == ["synth_000.txt", "synth_001.wav"]


@pytest.mark.parametrize("name", ["../../elsewhere/x", "/etc/passwd", "sub/synth_000", "..", ""])
def test_video_names_must_stay_inside_the_dataset(synth_root, tmp_path, name):
    with pytest.raises(ValueError, match="not a file name inside"):
        AffWild2Dataset(synth_root, videos=[name], config=TINY, skip_bad=True)
    (tmp_path / "split.txt").write_text(f"synth_000\n{name}\n")
    if name:
        with pytest.raises(ValueError, match="not a file name inside"):
            AffWild2Dataset(synth_root, videos=read_split_list(tmp_path / "split.txt"), config=TINY)
