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
from aver_fast.export import example_inputs, export_model, run_exported
from aver_fast.inference import load_model
from aver_fast.models import AVER, AVERConfig
from aver_fast.training import TrainConfig

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


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("exported-program", ".pt2")])
@pytest.mark.parametrize("features", [False, True], ids=["full", "features"])
def test_exported_files_keep_the_models_nan(tiny_ckpt, tmp_path, fmt, suffix, features):
    """Was: onnxruntime gave the same finite scores for an all-NaN input as for a clean one (its ReLU and max-pool
    drop NaN); PyTorch gives NaN. Each item's NaN or Inf input gives NaN for that item only."""
    model, _ = load_model(tiny_ckpt)
    path = str(tmp_path / f"m{suffix}")
    export_model(model, path, fmt, features=features)
    inputs = example_inputs(model, features, batch=3)
    first, second = list(inputs)
    inputs[first][0].view(-1)[7] = float("nan")  # one value of item 0
    inputs[second][1].fill_(float("inf"))  # all of item 1
    got = run_exported(path, fmt, inputs)
    with torch.no_grad():
        want = (model.forward_features if features else model)(*inputs.values())
    bad = torch.isnan(want).flatten(1).any(1)
    assert bad.tolist() == [True, True, False], "PyTorch's own rule, which the file must keep"
    assert torch.isnan(got).flatten(1).all(1).tolist() == [True, True, False]
    assert (got[2] - want[2]).abs().max() <= TOL


def test_an_empty_batch_is_a_normal_error_not_an_abort(tiny_ckpt, tmp_path):
    """Was: onnxruntime aborted the host process at batch 0 (exit 134)."""
    model, _ = load_model(tiny_ckpt)
    path = str(tmp_path / "m.onnx")
    export_model(model, path, "onnx")
    with pytest.raises(ValueError, match="input video has an empty batch: exported files need at least one item"):
        run_exported(path, "onnx", example_inputs(model, batch=0))


def test_the_destination_is_checked_before_the_export(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """Was: a destination that cannot be written failed only after the whole export, naming a temporary file."""
    import aver_fast.export as E

    def never(*_args, **_kwargs):
        pytest.fail("exported before the check")
    monkeypatch.setattr(E.torch.onnx, "export", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", tiny_ckpt, "--out", str(blocker / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and ".tmp" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", tiny_ckpt, "--out", str(tmp_path / "folder.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
    monkeypatch.undo()
    (tmp_path / "a").mkdir()
    assert main(["export", tiny_ckpt, "--format", "exported-program", "--out",
                 str(tmp_path / "a" / "missing" / ".." / "x.pt2")]) == 0  # the folders a path names are made
    assert (tmp_path / "a" / "x.pt2").is_file() and not [f for f in os.listdir(tmp_path / "a") if ".tmp" in f]


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    import aver_fast.export as E

    def broken(*_args, **_kwargs):
        raise RuntimeError("tracing failed")
    monkeypatch.setattr(E.torch.export, "export", broken)
    with pytest.raises(RuntimeError, match="tracing failed"):
        export_model(AVER(AVERConfig.tiny()), str(tmp_path / "m.pt2"), "exported-program")
    assert os.listdir(tmp_path) == [], "neither the file nor the destination probe"
