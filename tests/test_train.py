"""The main job: training (config, schedule, checkpoints, bit-exact resume, Ctrl-C), features, evaluate, predict,
bad input, and DistributedDataParallel with 2 gloo processes against a single process."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from aver_fast.checkpoint import load_checkpoint
from aver_fast.cli import main
from aver_fast.data import make_synthetic, write_va
from aver_fast.train import TrainConfig, lr_factor, load_config, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("train_data"))
    make_synthetic(root, videos=5, seed=11, seconds=5.0, size=32)
    return root


def cfg(data, out, **kw):
    base = dict(data=data, out=str(out), preset="tiny", epochs=2, batch_size=4, lr=2e-3, max_batches=3,
                train_stride=32)
    base.update(kw)
    return TrainConfig(**base)


def test_config_file_overrides_and_unknown_keys(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('fusion = "jca"\nepochs = 7\nlr = 0.001\n')
    c = load_config(str(toml), ["epochs=3", "use_lstm=false"])
    assert (c.fusion, c.epochs, c.lr, c.use_lstm) == ("jca", 3, 0.001, False)
    toml.write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match="unknown config keys \\['nonsense'\\]"):
        load_config(str(toml))
    with pytest.raises(ValueError, match="bad override"):
        load_config(None, ["epochs"])
    with pytest.raises(ValueError, match="fusion must be"):
        load_config(None, ["fusion=transformer"])


def test_paper_learning_rate_schedule():
    c = TrainConfig()
    assert [lr_factor(e, c) for e in (0, 14, 15, 19, 20, 25, 29)] == pytest.approx(
        [1, 1, 0.9, 0.9, 0.81, 0.729, 0.729])


def test_training_logs_checkpoints_and_resume_is_bit_exact(data, tmp_path):
    full = train(cfg(data, tmp_path / "full"))
    log = [json.loads(line) for line in open(tmp_path / "full" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [1, 2] and all("val" in r for r in log)
    assert full["epoch"] in (1, 2) and os.path.isfile(tmp_path / "full" / "best.safetensors")
    train(cfg(data, tmp_path / "split", epochs=1))
    train(cfg(data, tmp_path / "split", epochs=2), resume=True)
    a = load_file(str(tmp_path / "full" / "last.safetensors"))
    b = load_file(str(tmp_path / "split" / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_saves_a_resumable_checkpoint(data, tmp_path, monkeypatch):
    import aver_fast.train as T

    original = T._forward
    calls = {"n": 0}

    def interrupting_forward(model, batch, device, features):
        calls["n"] += 1
        if calls["n"] == 2 and model.training:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during the second step
        return original(model, batch, device, features)
    monkeypatch.setattr(T, "_forward", interrupting_forward)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(data, tmp_path / "int"))
    _, state = load_checkpoint(str(tmp_path / "int" / "last"))
    assert (state["epoch"], state["batch"]) == (0, 2)
    monkeypatch.setattr(T, "_forward", original)
    train(cfg(data, tmp_path / "int"), resume=True)
    train(cfg(data, tmp_path / "ref"))
    a = load_file(str(tmp_path / "int" / "last.safetensors"))
    b = load_file(str(tmp_path / "ref" / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_fails_before_any_work(data, tmp_path):
    train(cfg(data, tmp_path / "aver", epochs=1))
    with pytest.raises(ValueError, match="another architecture"):
        train(cfg(data, tmp_path / "aver", epochs=2, fusion="jca"), resume=True)
    with pytest.raises(ValueError, match="checkpoint file not found"):
        train(cfg(data, tmp_path / "empty"), resume=True)
    unlabelled = tmp_path / "unlabelled"
    make_synthetic(str(unlabelled), videos=1, seed=0, seconds=2.0, size=32)
    write_va(str(unlabelled / "annotations" / "synth_000.txt"), torch.full((60, 2), -5.0).numpy())
    with pytest.raises(ValueError, match="no valid"):
        train(cfg(str(unlabelled), tmp_path / "u"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        train(cfg(data, blocker / "run"))
    assert main(["train", "--data", data, "--set", "bogus=1"]) == 2


def test_evaluate_predict_and_feature_cache(data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(run), "--preset", "tiny", "--set", "epochs=1",
                 "--set", "max_batches=2", "--set", "batch_size=4"]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", str(run / "best"), str(run / "last"), "--data", data, "--conditions", "clean,dual",
                 "--out", str(out)]) == 0
    results = json.loads((out / "evaluation.json").read_text())
    assert set(results[str(run / "best")]) == {"clean", "dual"}
    assert results[str(run / "best")]["dual"]["params"][0]["transform"] == "Babble"
    assert "| clean |" in (out / "evaluation.md").read_text()
    pred = tmp_path / "pred"
    assert main(["predict", os.path.join(data, "videos", "synth_000.mp4"), "--checkpoint", str(run / "best"),
                 "--labels", os.path.join(data, "annotations", "synth_000.txt"), "--out", str(pred)]) == 0
    lines = (pred / "synth_000.csv").read_text().splitlines()
    assert lines[0] == "frame,time_s,valence,arousal" and len(lines) == 151
    assert (pred / "synth_000_trace.png").stat().st_size > 1000 and (pred / "synth_000_va.png").is_file()
    feats = tmp_path / "feats"
    assert main(["extract-features", "--data", data, "--out", str(feats), "--preset", "tiny"]) == 0
    index = json.loads((feats / "index.json").read_text())
    assert sum(index["videos"].values()) > 0
    best = train(cfg(data, tmp_path / "frun", features=str(feats), epochs=1))
    assert set(best) >= {"valence", "arousal", "mean"}


def test_two_process_ddp_matches_single_process(data, tmp_path):
    """On cached features (the fusion has no batch norm, so ranks keep identical weights), with lr=0 the validation
    CCC must equal the single-process one (a global CCC over gathered predictions, no window counted twice); with
    training, the runs agree within tolerance (the CCC loss of a rank's half batch is not that of the whole)."""
    feats = tmp_path / "feats"
    assert main(["extract-features", "--data", data, "--out", str(feats), "--preset", "tiny"]) == 0

    def run(out, world, lr):
        args = ["--data", data, "--out", str(out), "--preset", "tiny", "--features", str(feats), "--set", "epochs=1",
                "--set", "batch_size=4", "--set", "max_batches=2", "--set", f"lr={lr}", "--set", "train_stride=32"]
        if world == 1:
            cmd = [sys.executable, "-m", "aver_fast.train", *args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                   "--master_port", str(29500 + os.getpid() % 1000), "-m", "aver_fast.train", *args]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])["best"]
    single, double = run(tmp_path / "s0", 1, 0.0), run(tmp_path / "d0", 2, 0.0)
    assert single["mean"] == pytest.approx(double["mean"], abs=1e-6)
    single, double = run(tmp_path / "s1", 1, 2e-3), run(tmp_path / "d1", 2, 2e-3)
    assert abs(single["mean"] - double["mean"]) < 0.15


def test_backbone_weight_files(data, tmp_path):
    from aver_fast.models import AVER, AVERConfig

    ref = AVER(AVERConfig.tiny())
    torch.save(ref.video_backbone.state_dict(), tmp_path / "video.pth")
    torch.save(ref.audio_backbone.state_dict(), tmp_path / "audio.pth")
    c = cfg(data, tmp_path / "w", video_weights=str(tmp_path / "video.pth"), audio_weights=str(tmp_path / "audio.pth"))
    from aver_fast.train import build_model
    model = build_model(c)
    assert all(torch.equal(model.video_backbone.state_dict()[k], v) for k, v in ref.video_backbone.state_dict().items())
    assert main(["extract-features", "--data", data, "--out", str(tmp_path / "f"), "--preset", "tiny",
                 "--video-weights", str(tmp_path / "video.pth")]) == 0
    assert main(["extract-features", "--data", data, "--out", str(tmp_path / "g"), "--preset", "tiny",
                 "--video-weights", str(tmp_path / "audio.pth")]) == 2  # wrong file: a clear error, no crash
