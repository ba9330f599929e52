"""The main job: training (config, schedule, checkpoints, bit-exact resume, Ctrl-C), features, evaluate, predict,
bad input, and DistributedDataParallel with 2 gloo processes against a single process."""
import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from aver_fast.checkpoint import load_checkpoint
from aver_fast.cli import main
from aver_fast.data import make_synthetic, write_va
from aver_fast.training import TrainConfig, lr_factor, train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def test_paper_learning_rate_schedule():
    c = TrainConfig()
    assert [lr_factor(e, c) for e in (0, 14, 15, 19, 20, 25, 29)] == pytest.approx(
        [1, 1, 0.9, 0.9, 0.81, 0.729, 0.729])


def test_training_logs_checkpoints_and_resume_is_bit_exact(data, tmp_path):
    full = train(cfg(data, tmp_path / "full"))
    log = [json.loads(line) for line in open(tmp_path / "full" / "log.jsonl")]
    assert [r["epoch"] for r in log] == [1, 2] and all("val" in r for r in log)
    assert full["epoch"] in (1, 2) and os.path.isfile(tmp_path / "full" / "best" / "model.safetensors")
    train(cfg(data, tmp_path / "split", epochs=1))
    train(cfg(data, tmp_path / "split", epochs=2), resume=True)
    a = load_checkpoint(str(tmp_path / "full" / "last"))[0]
    b = load_checkpoint(str(tmp_path / "split" / "last"))[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("at", [2, 3], ids=["mid-epoch", "epoch-end"])
def test_ctrl_c_saves_a_resumable_checkpoint(data, tmp_path, monkeypatch, at):
    """Ctrl-C during step ``at`` of 3: a resumable checkpoint; after --resume, weights and the log (the epoch's loss
    over all its batches, not only those after resuming) equal an uninterrupted run's."""
    import aver_fast.training.steps as T

    original = T.forward
    calls = {"n": 0}

    def interrupting_forward(model, batch, device):
        calls["n"] += 1
        if calls["n"] == at and model.training:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during this step
        return original(model, batch, device)
    monkeypatch.setattr(T, "forward", interrupting_forward)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(data, tmp_path / "int"))
    _, state = load_checkpoint(str(tmp_path / "int" / "last"))
    assert (state["epoch"], state["batch"]) == (0, at)
    monkeypatch.setattr(T, "forward", original)
    train(cfg(data, tmp_path / "int"), resume=True)
    train(cfg(data, tmp_path / "ref"))
    a = load_checkpoint(str(tmp_path / "int" / "last"))[0]
    b = load_checkpoint(str(tmp_path / "ref" / "last"))[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line) for line in open(tmp_path / run / "log.jsonl")] for run in ("int", "ref")]
    for got, want in zip(*logs, strict=True):
        assert (got["loss"], got["batches"], got["skipped"]) == (want["loss"], 3, 0)


def nan_at(monkeypatch, step: int) -> None:
    """Training step ``step`` (counted over the run) predicts NaN, as a diverged model would."""
    import aver_fast.training.steps as T

    original, calls = T.forward, {"n": 0}

    def forward(model, batch, device):
        out = original(model, batch, device)
        if model.training:
            calls["n"] += 1
            if calls["n"] == step:
                return out * float("nan")
        return out
    monkeypatch.setattr(T, "forward", forward)


def test_divergence_stops_and_keeps_the_last_finite_checkpoint(data, tmp_path, monkeypatch):
    from aver_fast.training import TrainingDiverged

    nan_at(monkeypatch, 5)  # epoch 2, step 2
    with pytest.raises(TrainingDiverged, match="diverged at epoch 2, step 2: the loss is nan.*last finite checkpoint"):
        train(cfg(data, tmp_path / "run"))
    weights, state = load_checkpoint(str(tmp_path / "run" / "last"))
    assert state["epoch"] == 1 and all(torch.isfinite(w).all() for w in weights.values())


def test_divergence_skip_mode_skips_and_counts(data, tmp_path, monkeypatch):
    nan_at(monkeypatch, 2)
    best = train(cfg(data, tmp_path / "run", on_nonfinite="skip"))
    log = [json.loads(line) for line in open(tmp_path / "run" / "log.jsonl")]
    assert [(r["batches"], r["skipped"]) for r in log] == [(2, 1), (3, 0)]
    assert all(math.isfinite(r["loss"]) for r in log) and math.isfinite(best["mean"])
    weights = load_checkpoint(str(tmp_path / "run" / "last"))[0]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_diverging_run_exits_non_zero_without_a_fake_score(data, tmp_path, capsys):
    """The issue's reproduction: a huge learning rate. Exit 3, the reason with epoch and step, no score printed."""
    code = main(["train", "--data", data, "--out", str(tmp_path / "run"), "--preset", "tiny", "--set", "lr=1e4",
                 "--set", "epochs=3", "--set", "max_batches=3", "--set", "batch_size=4", "--set", "train_stride=32"])
    out, err = capsys.readouterr()
    assert code == 3 and "diverged at epoch" in err and "step" in err
    assert "Infinity" not in out + err and "best" not in out


def test_bad_input_fails_before_any_work(data, tmp_path):
    train(cfg(data, tmp_path / "aver", epochs=1))
    with pytest.raises(ValueError, match="another architecture"):
        train(cfg(data, tmp_path / "aver", epochs=2, fusion="jca"), resume=True)
    with pytest.raises(ValueError, match="checkpoint not found"):
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


def test_disk_full_during_training_exits_2_naming_the_file(data, tmp_path, monkeypatch, capsys):
    import errno

    import aver_fast.checkpoint as C

    run = tmp_path / "run"
    args = ["train", "--data", data, "--out", str(run), "--preset", "tiny", "--set", "epochs=2", "--set",
            "max_batches=2", "--set", "batch_size=4", "--set", "train_stride=32"]
    real, saves = C._write_file, {"n": 0}

    def fills_up(path, payload):
        saves["n"] += path.endswith("model.safetensors")
        if saves["n"] > 2:  # epoch 2's saves: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, payload)
    monkeypatch.setattr(C, "_write_file", fills_up)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "aver-fast train: no space left on device" in err and "while writing" in err and "Traceback" not in err
    assert load_checkpoint(str(run / "last"))[1]["epoch"] == 1 and load_checkpoint(str(run / "best"))


def test_evaluate_names_an_empty_test_split(tmp_path, capsys):
    small = str(tmp_path / "three")
    make_synthetic(small, videos=3, seed=5, seconds=3.0, size=32)  # 60/20/20 of 3 videos: 2/1/0
    run = tmp_path / "run"
    assert main(["train", "--data", small, "--out", str(run), "--preset", "tiny", "--set", "epochs=1",
                 "--set", "max_batches=1", "--set", "batch_size=2", "--set", "train_stride=64"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run / "best"), "--data", small, "--out", str(tmp_path / "e")]) == 2
    assert "its test split is empty (videos per split: train 2, val 1, test 0)" in capsys.readouterr().err
    assert main(["evaluate", str(run / "best"), "--data", small, "--videos", "synth_000", "--batch-size", "1",
                 "--out", str(tmp_path / "e")]) == 0


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
            cmd = [sys.executable, "-m", "aver_fast", "train", *args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                   "--master_port", str(29500 + os.getpid() % 1000), "-m", "aver_fast", "train", *args]
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
    from aver_fast.training import build_model
    model = build_model(c)
    assert all(torch.equal(model.video_backbone.state_dict()[k], v) for k, v in ref.video_backbone.state_dict().items())
    assert main(["extract-features", "--data", data, "--out", str(tmp_path / "f"), "--preset", "tiny",
                 "--video-weights", str(tmp_path / "video.pth")]) == 0
    assert main(["extract-features", "--data", data, "--out", str(tmp_path / "g"), "--preset", "tiny",
                 "--video-weights", str(tmp_path / "audio.pth")]) == 2  # wrong file: a clear error, no crash


def test_bfloat16_autocast_training_on_cpu(data, tmp_path):
    """The training loop's autocast path (bf16 on GPU by default), exercised on CPU behind amp_cpu."""
    best = train(cfg(data, tmp_path / "amp", epochs=1, amp_cpu=True))
    assert best is not None and math.isfinite(best["mean"])
    log = [json.loads(line) for line in open(tmp_path / "amp" / "log.jsonl")]
    assert log[0]["batches"] == 3 and math.isfinite(log[0]["loss"])


def test_saving_never_deletes_through_a_link_outside_the_run(data, tmp_path, capsys):
    """Was: a RUN/best link to a folder elsewhere made the first save delete that folder."""
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "f").write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "best")
    assert main(["train", "--data", data, "--out", str(run), "--preset", "tiny", "--set", "epochs=1",
                 "--set", "max_batches=1", "--set", "batch_size=2"]) == 2
    err = capsys.readouterr().err
    assert "best is a link to" in err and "outside" in err and len(err.strip().splitlines()) == 1
    assert (outside / "f").read_text() == "keep" and not (run / "log.jsonl").exists()


@pytest.mark.parametrize("blocker", ["best", "last", "log.jsonl"])
def test_a_foreign_best_last_or_log_fails_before_an_epoch(data, tmp_path, blocker, monkeypatch):
    import aver_fast.training.steps as T

    monkeypatch.setattr(T, "forward", lambda *_: pytest.fail("trained before the run folder was checked"))
    run = tmp_path / "run"
    run.mkdir()
    if blocker == "log.jsonl":
        target = tmp_path / "someone_elses.log"
        target.write_text("theirs\n")
        os.symlink(target, run / blocker)
    else:
        (run / blocker).mkdir()  # a regular folder: once found only when the first save failed
    with pytest.raises(ValueError, match=f"{blocker} (exists and is not a checkpoint link|is not a regular file)"):
        train(cfg(data, run, epochs=1))
    assert not (run / ".checkpoints").exists() or not os.listdir(run / ".checkpoints")
    if blocker == "log.jsonl":
        assert (tmp_path / "someone_elses.log").read_text() == "theirs\n"


def test_resume_refuses_settings_it_would_silently_ignore(data, tmp_path):
    train(cfg(data, tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match=r"lr=0.5 \(the run has 0.002\) cannot change mid-run"):
        train(cfg(data, tmp_path / "run", epochs=2, lr=0.5), resume=True)
    with pytest.raises(ValueError, match="batch_size=2 .* seed=3 "):
        train(cfg(data, tmp_path / "run", epochs=2, batch_size=2, seed=3), resume=True)
    best = train(cfg(data, tmp_path / "run", epochs=2, max_batches=2), resume=True)  # how long: may change
    assert best is not None
    state = load_checkpoint(str(tmp_path / "run" / "last"))[1]
    assert (state["epoch"], state["config"]["epochs"], state["config"]["lr"]) == (2, 2, 2e-3)


@pytest.mark.parametrize("setting, message", [
    ("max_batches=-1", "max_batches must be >= 0"), ("lr_decay_every=0", "lr_decay_every must be >= 1"),
    ("device=bogus", "device must be 'auto' or a torch device"),
    ("device=cuda", "device 'cuda' is not available"), ("device=meta", "training runs on 'cpu' or 'cuda'"),
], ids=["negative-cap", "zero-period", "bogus", "cuda", "meta"])
def test_bad_settings_are_one_line_before_any_work(data, tmp_path, capsys, setting, message):
    if setting == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: device=cuda is valid here")
    code = main(["train", "--data", data, "--out", str(tmp_path / "run"), "--preset", "tiny", "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "log.jsonl").exists()
