"""The synthetic benchmark: real files in the Aff-Wild2 layout, whose modalities follow the traces."""
import json
import os

import numpy as np
import torch

from aver_fast.cli import main
from aver_fast.data import (
    AffWild2Dataset,
    AlignmentConfig,
    VideoSource,
    load_audio,
    read_va,
)


def test_files_layout_and_labels(synth_root):
    names = sorted(os.listdir(os.path.join(synth_root, "videos")))
    assert names == [f"synth_{i:03d}.mp4" for i in range(4)]
    meta = json.load(open(os.path.join(synth_root, "synthetic.json")))
    assert meta["videos"] == 4 and meta["seed"] == 3
    labels = read_va(os.path.join(synth_root, "annotations", "synth_000.txt"))
    v = VideoSource(os.path.join(synth_root, "videos", "synth_000.mp4"))
    assert len(labels) == len(v) == 180
    valid = (labels != -5).all(axis=1)
    assert 0 < (~valid).sum() < 30 and np.abs(labels[valid]).max() <= 0.9 + 1e-6


def test_audio_loudness_follows_arousal(synth_root):
    """Arousal drives loudness (and pitch, rate); check the loudness-arousal correlation over 0.2 s blocks."""
    corrs = []
    for i in range(4):
        name = f"synth_{i:03d}"
        labels = read_va(os.path.join(synth_root, "annotations", name + ".txt"))
        audio = load_audio(os.path.join(synth_root, "videos", name + ".mp4")).samples
        block = 44100 // 5
        rms = torch.stack([audio[k * block:(k + 1) * block].pow(2).mean().sqrt() for k in range(29)]).numpy()
        aro = np.array([labels[k * 6:(k + 1) * 6, 1].mean() for k in range(29)])
        ok = (labels[::6][:29] != -5).all(axis=1) & (rms > 0.01)  # skip invalid labels and muted segments
        corrs.append(np.corrcoef(rms[ok], aro[ok])[0, 1])
    assert np.mean(corrs) > 0.5, corrs


def test_same_seed_same_dataset(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["make-synthetic", str(out), "--videos", "1", "--seed", "5", "--seconds", "2", "--size", "32"]) == 0
    assert (a / "annotations" / "synth_000.txt").read_text() == (b / "annotations" / "synth_000.txt").read_text()
    fa = VideoSource(str(a / "videos" / "synth_000.mp4")).frames(np.arange(10))
    fb = VideoSource(str(b / "videos" / "synth_000.mp4")).frames(np.arange(10))
    assert np.array_equal(fa, fb)


def test_corrupt_command_writes_a_loadable_copy_with_its_condition(synth_root, tmp_path, capsys):
    out = tmp_path / "dual"
    assert main(["corrupt", synth_root, str(out), "--condition", "dual", "--seed", "1"]) == 0
    meta = json.load(open(out / "condition.json"))
    assert meta["condition"] == "dual" and {t["transform"] for t in meta["transforms"]} == {"Babble", "Occlusion"}
    clean = AffWild2Dataset(synth_root, videos=["synth_000"], config=AlignmentConfig.tiny())[0]
    noisy = AffWild2Dataset(str(out), videos=["synth_000"], config=AlignmentConfig.tiny())[0]
    assert torch.equal(clean["target"], noisy["target"])
    assert not torch.allclose(clean["audio"], noisy["audio"]) and not torch.allclose(clean["video"], noisy["video"])
    assert main(["corrupt", synth_root, synth_root, "--condition", "dual"]) == 2
    assert main(["corrupt", synth_root, str(tmp_path / "x"), "--condition", "rain"]) == 2
    assert "unknown corruption" in capsys.readouterr().err


def test_bad_sizes_and_lengths_are_one_line(tmp_path, capsys):
    """Was: --size 0 or 7 and --seconds 0 or -5 ended in tracebacks from the encoder or numpy."""
    for flag, value, message in (("--size", "0", "size must be an even number"),
                                 ("--size", "7", "size must be an even number"),
                                 ("--seconds", "0", "seconds must be in [2, 3600]"),
                                 ("--seconds", "-5", "seconds must be in"), ("--videos", "0", "videos must be")):
        assert main(["make-synthetic", str(tmp_path / "d"), flag, value]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists(), "nothing written"
