"""aver-fast export (aver_fast/export.py): ONNX and ExportedProgram files that run without aver_fast, checked
against PyTorch at batch sizes other than the one traced."""
import json
import os
import subprocess
import sys

import pytest
import torch

from aver_fast.checkpoint import save_run
from aver_fast.cli import main
from aver_fast.config import TrainConfig
from aver_fast.export import example_inputs, export_model, run_exported
from aver_fast.inference import load_model
from aver_fast.models import AVER, AVERConfig

TOL = 1e-4  # the test dependencies include the export extra (onnx, onnxscript, onnxruntime): no skipping


def _checkpoint(root, preset: str) -> str:
    torch.manual_seed(0)
    cfg = TrainConfig(preset=preset)
    prefix = os.path.join(root, preset, "best")
    save_run(prefix, AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []}, epoch=1)
    return prefix


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return _checkpoint(str(tmp_path_factory.mktemp("ckpt")), "tiny")


def _export(ckpt, out, fmt, features, capsys) -> dict:
    args = ["export", ckpt, "--format", fmt, "--out", out] + (["--features"] if features else [])
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["check"]["batch"] == 1 and report["check"]["max_abs_diff"] <= TOL
    return report


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("exported-program", ".pt2")])
@pytest.mark.parametrize("features", [False, True], ids=["full", "features"])
def test_tiny_exports_run_at_other_batch_sizes(tiny_ckpt, tmp_path, capsys, fmt, suffix, features):
    out = str(tmp_path / f"m{suffix}")
    report = _export(tiny_ckpt, out, fmt, features, capsys)
    names = ["v_feat", "a_feat"] if features else ["video", "audio"]
    assert list(report["inputs"]) == names and report["output"] == "va"
    model, _ = load_model(tiny_ckpt)
    for batch in (3, 1):
        inputs = example_inputs(model, features, batch=batch)
        with torch.no_grad():
            want = (model.forward_features if features else model)(*inputs.values())
        got = run_exported(out, fmt, inputs)
        assert got.shape == (batch, model.config.seq_len, 2)
        assert (got - want).abs().max().item() <= TOL
    assert os.listdir(tmp_path) == [os.path.basename(out)], "no temporary files left behind"


def test_onnx_holds_only_standard_operators(tiny_ckpt, tmp_path):
    import onnx

    model, _ = load_model(tiny_ckpt)
    export_model(model, str(tmp_path / "m.onnx"), "onnx")
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert {op.domain for op in graph.opset_import} <= {"", "ai.onnx"}
    assert all(node.domain in ("", "ai.onnx") for node in graph.graph.node)


@pytest.mark.parametrize("suffix, fmt", [(".onnx", "onnx"), (".pt2", "exported-program")])
def test_files_run_where_aver_fast_is_not_importable(tiny_ckpt, tmp_path, suffix, fmt):
    model, _ = load_model(tiny_ckpt)
    path = str(tmp_path / f"m{suffix}")
    export_model(model, path, fmt)
    inputs = example_inputs(model, batch=3)
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        torch.save(model(*inputs.values()), tmp_path / "want.pt")
    script = f"""
import sys
sys.modules["aver_fast"] = None  # any import of aver_fast fails
import torch
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
if {fmt!r} == "onnx":
    import onnxruntime
    s = onnxruntime.InferenceSession({path!r}, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(s.run(["va"], {{k: v.numpy() for k, v in inputs.items()}})[0])
else:
    got = torch.export.load({path!r}).module()(*inputs.values())
print((got - torch.load({str(tmp_path / "want.pt")!r})).abs().max().item())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) <= TOL


def test_paper_full_model_and_public_code_features(tmp_path, capsys):
    """The paper preset end to end (R(2+1)D, ResNet18, the fusion; 280 MB) and the public-code fusion (learned LSTM
    states, feature co-attention), each checked at batch 1 after tracing at 2."""
    paper = _checkpoint(str(tmp_path), "paper")
    report = _export(paper, str(tmp_path / "paper.onnx"), "onnx", False, capsys)
    assert report["inputs"] == {"video": "Bx16x3x8x112x112", "audio": "Bx16x1x128x104"}
    public = _checkpoint(str(tmp_path), "public_code")
    report = _export(public, str(tmp_path / "public.onnx"), "onnx", True, capsys)
    assert report["inputs"] == {"v_feat": "Bx16x49x512", "a_feat": "Bx16x512"}


def test_bad_requests_are_clear(tiny_ckpt, tmp_path, capsys, monkeypatch):
    assert main(["export", tiny_ckpt, "--format", "exported-program", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "needs a file name ending in .pt2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "nothing" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ValueError, match=r"needs the onnxscript package: pip install 'aver-fast\[export\]'"):
        export_model(AVER(AVERConfig.tiny()), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
