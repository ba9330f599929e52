"""`aver-fast quantize` (aver_fast/int8): an int8 checkpoint that predict and evaluate run in int8 (the default
``--precision auto``) within a measured distance of fp32, and every refusal the issue names: one line, exit 2,
nothing written."""
import json
import os
import sys

import numpy as np
import pytest
import torch

from aver_fast.checkpoint import load_checkpoint, save_run
from aver_fast.cli import main
from aver_fast.data import make_synthetic
from aver_fast.models import AVER
from aver_fast.training import TrainConfig

pytest.importorskip("openvino", reason="the int8 extra (make test installs it)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    make_synthetic(str(root / "data"), videos=4, seed=6, seconds=5.0, size=32)
    torch.manual_seed(0)
    cfg = TrainConfig(preset="tiny", faces="none")
    fp32 = str(root / "run" / "best")
    save_run(fp32, AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": ["synth_003"]}, epoch=1)
    int8 = str(root / "run" / "int8")
    assert main(["quantize", fp32, "--data", str(root / "data"), "--out", int8]) == 0
    return root, fp32, int8


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_the_int8_checkpoint_records_its_engine_files_and_report(setup):
    root, fp32, int8 = setup
    assert os.path.islink(int8)  # RUN/int8, like RUN/best
    state = load_checkpoint(int8)[1]
    info = state["int8"]
    assert info["engine"] == "openvino" and info["source"]["checkpoint"] == fp32
    manifest = json.load(open(os.path.join(int8, "manifest.json")))
    for xml, weights in info["files"].values():
        assert xml in manifest["files"] and weights in manifest["files"]
    r = info["report"]
    assert r["held_out_videos"] == ["synth_003"] and r["calibration_videos"] == 3
    assert r["predictions"]["ccc_valence"] >= 0.98 and r["predictions"]["ccc_arousal"] >= 0.98
    assert 0.9 < r["video_features"]["cosine_min"] <= 1 and 0.9 < r["audio_features"]["cosine_min"] <= 1
    assert state["split"] == load_checkpoint(fp32)[1]["split"]  # evaluate's test split carries over


def test_predict_and_evaluate_run_int8_by_default_close_to_fp32(setup, tmp_path, capsys):
    root, fp32, int8 = setup
    videos = str(root / "data" / "videos")
    assert main(["predict", videos, "--checkpoint", int8, "--out", str(tmp_path / "q"), "--faces", "none"]) == 0
    assert main(["predict", videos, "--checkpoint", int8, "--out", str(tmp_path / "f"), "--faces", "none",
                 "--precision", "fp32"]) == 0
    assert main(["predict", videos, "--checkpoint", fp32, "--out", str(tmp_path / "s"), "--faces", "none",
                 "--precision", "fp32"]) == 0
    capsys.readouterr()
    for name in ("synth_000", "synth_003"):
        q, f, s = (np.loadtxt(tmp_path / d / f"{name}.csv", delimiter=",", skiprows=1) for d in "qfs")
        np.testing.assert_array_equal(f, s)  # --precision fp32 runs the stored fp32 weights
        diff = np.abs(q[:, 2:] - s[:, 2:]).max()
        assert 0 < diff < 0.05, diff  # int8 did run, and within the 0.05
    summary = (tmp_path / "q" / "summary.csv").read_text().splitlines()
    col = summary[0].split(",").index("precision")
    assert {row.split(",")[col] for row in summary[1:]} == {"int8"}
    assert main(["evaluate", int8, "--data", str(root / "data"), "--out", str(tmp_path / "e")]) == 0
    report = json.load(open(tmp_path / "e" / "evaluation.json"))
    assert report[int8]["clean"]["precision"] == "int8"


def test_refusals_are_one_line_and_write_nothing(setup, tmp_path, capsys):
    root, fp32, int8 = setup
    data = str(root / "data")
    out = str(tmp_path / "run" / "q")
    err = _one_line_error(capsys, main(["quantize", fp32, "--data", data, "--out", out, "--min-ccc", "1"]))
    assert "CCC(fp32, int8) of" in err and "< 1.0" in err and "nothing written" in err
    assert "already quantized" in _one_line_error(capsys, main(["quantize", int8, "--data", data, "--out", out]))
    assert "not a checkpoint aver-fast quantize wrote" in _one_line_error(
        capsys, main(["quantize", fp32, "--data", data, "--out", fp32]))
    one = tmp_path / "one"
    make_synthetic(str(one), videos=1, seed=1, seconds=3.0, size=32)
    assert "at least 2 videos" in _one_line_error(capsys, main(["quantize", fp32, "--data", str(one), "--out", out]))
    assert not os.path.lexists(out) and not os.path.exists(tmp_path / "run" / ".checkpoints")
    assert "export its fp32 checkpoint" in _one_line_error(
        capsys, main(["export", int8, "--out", str(tmp_path / "m.onnx")]))
    assert not os.path.exists(tmp_path / "m.onnx")
    assert "needs a quantized checkpoint" in _one_line_error(
        capsys, main(["predict", data + "/videos", "--checkpoint", fp32, "--precision", "int8",
                      "--out", str(tmp_path / "p")]))


def test_a_missing_extra_is_named(setup, tmp_path, capsys, monkeypatch):
    root, fp32, int8 = setup
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails
    err = _one_line_error(capsys, main(["quantize", fp32, "--data", str(root / "data"),
                                        "--out", str(tmp_path / "r" / "q")]))
    assert "pip install 'aver-fast[int8]'" in err and not os.path.exists(tmp_path / "r")
    err = _one_line_error(capsys, main(["predict", str(root / "data" / "videos"), "--checkpoint", int8,
                                        "--out", str(tmp_path / "p")]))
    assert "aver-fast[int8]" in err and not os.path.exists(tmp_path / "p")


def test_a_damaged_int8_model_is_named(setup, tmp_path, capsys):
    import shutil

    root, _, int8 = setup
    copy = tmp_path / "copy"
    shutil.copytree(os.path.realpath(int8), copy)
    victim = copy / "video_backbone.int8.bin"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    err = _one_line_error(capsys, main(["predict", str(root / "data" / "videos"), "--checkpoint", str(copy),
                                        "--out", str(tmp_path / "p")]))
    assert "video_backbone.int8.bin is damaged" in err and not os.path.exists(tmp_path / "p")


def test_the_engine_backbone_refuses_what_it_cannot_do():
    from aver_fast.int8.openvino import EngineModule

    m = EngineModule(lambda x: x * 2, "video")
    assert torch.equal(m(torch.ones(2, 3)), torch.full((2, 3), 2.0)) and not list(m.parameters())
    with pytest.raises(ValueError, match="computes no gradients"):
        m(torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match="runs on the CPU"):
        m(torch.ones(2, device="meta"))
