"""Fault injection for checkpoints (aver_fast/checkpoint.py): nothing loaded can run code, a crash at any instant
of a save (injected, or a real kill -9) leaves a loadable checkpoint, a full disk is named, damage is detected."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import aver_fast.checkpoint as C
from aver_fast.checkpoint import (
    CheckpointError,
    load_checkpoint,
    remove_stale,
    save_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LSTM(4, 3))


def same_weights(weights: dict, m: torch.nn.Module) -> bool:
    return weights.keys() == m.state_dict().keys() and all(torch.equal(weights[k], v) for k, v in
                                                           m.state_dict().items())


def leftovers(run) -> list[str]:
    """Checkpoint directories no link points at, and temporaries, in the run folder."""
    run = str(run)
    linked = {os.path.realpath(os.path.join(run, e)) for e in os.listdir(run) if os.path.islink(os.path.join(run, e))}
    store = os.path.join(run, C.STORE)
    found = [os.path.join(store, e) for e in os.listdir(store)] if os.path.isdir(store) else []
    found += [os.path.join(run, e) for e in os.listdir(run) if ".tmp-" in e]
    return [p for p in found if os.path.realpath(p) not in linked]


class Marker:
    """A pickle that creates a file when unpickled: it must never be created."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_state_round_trip_without_pickle(tmp_path):
    m = model(0)
    opt = torch.optim.Adam(m.parameters())
    m[0](torch.randn(2, 5)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "best": None, "score": float("-inf"), "pair": (1, "a"),
             "arr": np.arange(5, dtype=np.uint32), "nested": {3: [1.5, {"x": torch.ones(2)}]}}
    save_checkpoint(str(tmp_path / "last"), m, state)
    weights, got = load_checkpoint(str(tmp_path / "last"))
    assert same_weights(weights, m)
    assert got["best"] is None and got["score"] == float("-inf") and got["pair"] == (1, "a")
    assert got["arr"].dtype == np.uint32 and got["arr"].tolist() == [0, 1, 2, 3, 4]
    assert got["nested"][3][0] == 1.5 and torch.equal(got["nested"][3][1]["x"], torch.ones(2))
    opt.load_state_dict(got["optimizer"])
    C.set_rng_state(got["rng"])
    assert {f for f in os.listdir(tmp_path / "last")} == {*C.FILES, C.MANIFEST}
    with pytest.raises(TypeError, match="cannot hold a Marker"):
        save_checkpoint(str(tmp_path / "x"), m, {"evil": Marker(str(tmp_path / "never"))})


def test_a_malicious_pickle_is_never_loaded(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    prefix = tmp_path / "run" / "last"
    prefix.parent.mkdir()
    save_file({"w": torch.zeros(1)}, str(prefix) + ".safetensors", metadata={"id": "x"})
    torch.save({"id": "x", "evil": Marker(str(marker))}, str(prefix) + ".state.pt")
    monkeypatch.delenv(C.TRUST_PICKLE_ENV, raising=False)
    with pytest.raises(CheckpointError, match=f"can run code.*{C.TRUST_PICKLE_ENV}=1"):
        load_checkpoint(str(prefix))
    assert not marker.exists()
    # a crafted .state.pt beside a new-format checkpoint is never read either
    save_checkpoint(str(tmp_path / "run" / "best"), model(0), {})
    torch.save(Marker(str(marker)), str(tmp_path / "run" / "best.state.pt"))
    load_checkpoint(str(tmp_path / "run" / "best"))
    assert not marker.exists()
    from aver_fast.cli import main
    assert main(["evaluate", str(prefix), "--data", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    assert main(["predict", "x.mp4", "--checkpoint", str(prefix)]) == 2
    assert main(["extract-features", "--data", str(tmp_path), "--out", str(tmp_path / "f"), "--backbones",
                 str(prefix)]) == 2
    assert not marker.exists()
    monkeypatch.setenv(C.TRUST_PICKLE_ENV, "1")  # the documented opt-in does unpickle
    load_checkpoint(str(prefix))
    assert marker.exists()


STEPS = ["write-0", "write-1", "write-2", "write-3", "rename", "link"]


@pytest.mark.parametrize("step", STEPS)
def test_an_error_at_any_step_keeps_the_previous_checkpoint(tmp_path, monkeypatch, step):
    old, new = model(0), model(1)
    path = str(tmp_path / "last")
    save_checkpoint(path, old, {"epoch": 1})
    calls = {"n": 0}
    real_write, real_switch = C._write_file, C._switch_link

    def failing_write(p, data):
        if step == f"write-{calls['n']}":
            real_write(p, data[: len(data) // 2])  # half a file, then the error
            raise OSError(errno.EIO, "Input/output error")
        calls["n"] += 1
        real_write(p, data)
    monkeypatch.setattr(C, "_write_file", failing_write)
    if step == "rename":
        monkeypatch.setattr(C.os, "rename", lambda *_: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    if step == "link":
        monkeypatch.setattr(C, "_switch_link", lambda *_: (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(CheckpointError, match="cannot write checkpoint file"):
        save_checkpoint(path, new, {"epoch": 2})
    monkeypatch.setattr(C, "_write_file", real_write)
    monkeypatch.setattr(C, "_switch_link", real_switch)
    weights, state = load_checkpoint(path)
    assert same_weights(weights, old) and state["epoch"] == 1
    assert leftovers(tmp_path) == []  # the failed save cleaned up after itself


def test_disk_full_names_the_device_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "best")
    save_checkpoint(path, model(0), {"epoch": 1})

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(C, "_write_file", full)
    with pytest.raises(CheckpointError, match=r"no space left on device /\S* while writing .*model\.safetensors"):
        save_checkpoint(path, model(1), {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1]["epoch"] == 1
    assert leftovers(tmp_path) == []


CRASH = textwrap.dedent("""
    import os, sys, torch
    import aver_fast.checkpoint as C
    path, step = sys.argv[1], sys.argv[2]
    torch.manual_seed(1)
    new = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LSTM(4, 3))
    real_write, real_rename, real_switch, real_rmtree = C._write_file, C.os.rename, C._switch_link, C.shutil.rmtree
    n = {"write": 0}
    def write(p, data):
        if step == "mid-write" and n["write"] == 1:
            real_write(p, data[: len(data) // 2]); os._exit(9)
        n["write"] += 1; real_write(p, data)
    def rename(a, b):
        if step == "before-rename": os._exit(9)
        real_rename(a, b)
        if step == "after-rename": os._exit(9)
    def switch(a, b):
        real_switch(a, b)
        if step == "after-link": os._exit(9)
    C._write_file, C._switch_link = write, switch
    C.os.rename = rename
    C.save_checkpoint(path, new, {"epoch": 2})
    os._exit(0)
""")


@pytest.mark.parametrize("step", ["mid-write", "before-rename", "after-rename", "after-link"])
def test_a_crash_at_any_instant_leaves_old_or_new(tmp_path, step):
    """The process dies (no cleanup runs) at each point of a save; the checkpoint still loads, fully old or fully
    new, and the next start removes what the crash left."""
    path = str(tmp_path / "last")
    old = model(0)
    save_checkpoint(path, old, {"epoch": 1})
    res = subprocess.run([sys.executable, "-c", CRASH, path, step], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 9, res.stderr[-2000:]
    weights, state = load_checkpoint(path)
    expected = model(1) if step == "after-link" else old
    assert same_weights(weights, expected) and state["epoch"] == (2 if step == "after-link" else 1)
    if step != "after-link":
        assert leftovers(tmp_path), "the crash should have left a temporary behind"
    remove_stale(str(tmp_path))
    assert leftovers(tmp_path) == []
    assert load_checkpoint(path)[1]["epoch"] == state["epoch"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage-manifest", "no-manifest", "dangling"])
def test_damaged_checkpoints_are_named_in_one_line(tmp_path, damage, capsys):
    path = tmp_path / "last"
    save_checkpoint(str(path), model(0), {"epoch": 1, "config": {}})
    target = path / "model.safetensors"
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:-9] + bytes([data[-9] ^ 0x10]) + data[-8:])  # inside a tensor's bytes
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "garbage-manifest":
        (path / C.MANIFEST).write_bytes(os.urandom(64))
    elif damage == "no-manifest":
        (path / C.MANIFEST).unlink()
    elif damage == "dangling":
        import shutil
        shutil.rmtree(os.path.realpath(path))
    expected = {"flip": "model.safetensors is damaged", "truncate": "model.safetensors is damaged",
                "empty": "model.safetensors is damaged", "garbage-manifest": "manifest.json is damaged",
                "no-manifest": "manifest.json not found", "dangling": "does not exist"}[damage]
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(str(path))
    from aver_fast.cli import main
    capsys.readouterr()
    assert main(["evaluate", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_old_format_damage_is_one_line_with_the_opt_in(tmp_path, monkeypatch):
    prefix = str(tmp_path / "last")
    (tmp_path / "last.safetensors").write_bytes(b"\x00" * 3)
    (tmp_path / "last.state.pt").write_bytes(b"garbage")
    monkeypatch.setenv(C.TRUST_PICKLE_ENV, "1")
    with pytest.raises(CheckpointError, match="cannot read old-format checkpoint"):
        load_checkpoint(prefix)


TRAIN_CRASH = textwrap.dedent("""
    import os, sys, time
    import aver_fast.checkpoint as C
    from aver_fast.cli import main
    flag, stage, n = sys.argv[1], sys.argv[2], {"saves": 0}
    real_write, real_rename, real_switch = C._write_file, C.os.rename, C._switch_link
    def armed():  # epoch 2's first save (epoch 1 wrote best and last)
        return n["saves"] == 3
    def write(p, data):
        if p.endswith("model.safetensors"):
            n["saves"] += 1
        if armed() and p.endswith("state.safetensors"):  # half written, then killed from outside
            with open(p, "wb") as f:
                f.write(data[: len(data) // 2]); f.flush()
            open(flag, "w").close()
            time.sleep(600)
        real_write(p, data)
    def rename(a, b):
        if armed() and stage == "exit-before-rename": os._exit(9)
        real_rename(a, b)
        if armed() and stage == "exit-after-rename": os._exit(9)
    def switch(a, b):
        real_switch(a, b)
        if armed() and stage == "exit-after-link": os._exit(9)
    if stage == "kill-9-mid-write":
        C._write_file = write
    else:
        C._write_file = lambda p, data: (n.__setitem__("saves", n["saves"] + p.endswith("model.safetensors")),
                                         real_write(p, data))
    C.os.rename, C._switch_link = rename, switch
    sys.exit(main(["train", *sys.argv[3:]]))
""")


@pytest.mark.parametrize("stage", ["kill-9-mid-write", "exit-before-rename", "exit-after-rename", "exit-after-link"])
def test_a_crash_during_a_training_save_then_resume(tmp_path, stage):
    """Training dies during epoch 2's first save: a real kill -9 from outside while a file is half written, or the
    process exiting at once (no cleanup) between the steps of the save. The last checkpoint then loads and
    --resume finishes the run, leaving nothing stale behind."""
    from aver_fast.cli import main
    from aver_fast.data import make_synthetic

    data = str(tmp_path / "data")
    make_synthetic(data, videos=5, seed=3, seconds=3.0, size=32)
    run = tmp_path / "run"
    flag = tmp_path / "in-save"
    args = ["--data", data, "--out", str(run), "--preset", "tiny", "--set", "epochs=2", "--set", "max_batches=2",
            "--set", "batch_size=4", "--set", "train_stride=32"]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_CRASH, str(flag), stage, *args],
                            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stage == "kill-9-mid-write":
        deadline = time.time() + 300
        while not flag.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert flag.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no save started"
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (-signal.SIGKILL, 9), err.decode()[-2000:]
    # epoch 2's first save is best's or last's: last is epoch 1's, or epoch 2's when the link switch was complete
    assert load_checkpoint(str(run / "last"))[1]["epoch"] in ((1, 2) if stage == "exit-after-link" else (1,))
    assert leftovers(run), "the crash should have left a temporary or an unlinked checkpoint"
    assert main(["train", *args, "--resume"]) == 0
    assert load_checkpoint(str(run / "last"))[1]["epoch"] == 2
    assert leftovers(run) == []


# ------------------------------------------------------------------ nothing outside the run's own store is touched
def victim(folder) -> str:
    """A folder of someone else's, with a file in it: it must survive whatever a run does."""
    os.makedirs(folder)
    with open(os.path.join(folder, "precious.txt"), "w") as f:
        f.write("keep me")
    return str(folder)


def intact(folder) -> bool:
    return open(os.path.join(folder, "precious.txt")).read() == "keep me"


def test_a_link_to_a_folder_outside_the_run_is_refused_and_kept(tmp_path):
    outside = victim(tmp_path / "victim")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / "best")
    with pytest.raises(CheckpointError, match="best is a link to .*victim, outside .*checkpoints"):
        save_checkpoint(str(run / "best"), model(0), {})
    with pytest.raises(CheckpointError, match="outside"):
        C.check_run(str(run))
    assert intact(outside) and os.readlink(run / "best") == outside


def test_a_link_into_another_runs_store_is_refused(tmp_path):
    other = tmp_path / "other"
    save_checkpoint(str(other / "best"), model(0), {"epoch": 1})
    theirs = os.path.realpath(other / "best")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(theirs, run / "best")
    with pytest.raises(CheckpointError, match="outside"):
        save_checkpoint(str(run / "best"), model(1), {})
    assert load_checkpoint(str(other / "best"))[1]["epoch"] == 1


def test_a_shared_symlinked_store_is_refused_and_never_cleaned(tmp_path):
    first = tmp_path / "first"
    save_checkpoint(str(first / "last"), model(0), {"epoch": 1})
    second = tmp_path / "second"
    second.mkdir()
    os.symlink(first / C.STORE, second / C.STORE)  # the second run's store is the first's
    with pytest.raises(CheckpointError, match="not a folder of this run"):
        remove_stale(str(second))
    with pytest.raises(CheckpointError, match="not a folder of this run"):
        save_checkpoint(str(second / "last"), model(1), {})
    assert load_checkpoint(str(first / "last"))[1]["epoch"] == 1


def test_remove_stale_deletes_only_what_saves_create(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(str(run / "last"), model(0), {})
    store = run / C.STORE
    theirs = victim(tmp_path / "victim")
    os.symlink(theirs, store / "last-0123456789ab")  # a link named like a checkpoint, leading outside
    victim(store / "notes")  # a user's folder that is not named like a checkpoint
    (run / "data.tmp-1").write_text("a user's file")  # once removed by a glob on ".tmp-"
    orphan = store / "best-aaaaaaaaaaaa"
    orphan.mkdir()  # what a crash between rename and link switch leaves: removed
    removed = remove_stale(str(run))
    assert removed == [str(orphan)]
    assert intact(theirs) and intact(store / "notes") and (run / "data.tmp-1").is_file()


def test_a_fifo_or_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "last"
    save_checkpoint(str(path), model(0), {})
    directory = os.path.realpath(path)
    weights = os.path.join(directory, "model.safetensors")
    os.remove(weights)
    os.mkfifo(weights)  # reading it would block forever (a link to /dev/zero would never end)
    with pytest.raises(CheckpointError, match="model.safetensors is not a regular file"):
        load_checkpoint(str(path))
    os.remove(weights)
    with open(weights, "wb") as f:
        f.truncate(1 << 34)  # a sparse 16 GB file: the size in the manifest refuses it without reading
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged: 17179869184 bytes where"):
        load_checkpoint(str(path))
    assert time.perf_counter() - t0 < 5
    manifest = os.path.join(directory, C.MANIFEST)
    os.remove(manifest)
    os.mkfifo(manifest)
    with pytest.raises(CheckpointError, match="manifest.json is not a regular file"):
        load_checkpoint(str(path))


def test_more_files_are_checked_like_the_weights(tmp_path):
    """Files saved beside the weights (an int8 engine's models) are in the manifest, read back only when their
    checksum matches, and named plainly: a name that leaves the checkpoint is refused on save and on load."""
    import json

    from aver_fast.checkpoint import read_checkpoint_file

    prefix = str(tmp_path / "run" / "q")
    save_checkpoint(prefix, model(0), {"step": 1}, {"engine.xml": b"<net/>", "engine.bin": b"\x00\x01"})
    assert read_checkpoint_file(prefix, "engine.xml") == b"<net/>"
    with pytest.raises(CheckpointError, match="does not list other.bin"):
        read_checkpoint_file(prefix, "other.bin")
    with pytest.raises(ValueError, match="plain and new"):
        save_checkpoint(prefix, model(0), {}, {"../escape.bin": b""})
    with pytest.raises(ValueError, match="plain and new"):
        save_checkpoint(prefix, model(0), {}, {"meta.json": b"{}"})
    directory = os.path.realpath(prefix)
    with open(os.path.join(directory, "engine.bin"), "r+b") as f:
        f.write(b"\x07")
    with pytest.raises(CheckpointError, match="engine.bin is damaged"):
        read_checkpoint_file(prefix, "engine.bin")
    with pytest.raises(CheckpointError, match="engine.bin is damaged"):
        load_checkpoint(prefix)
    manifest = os.path.join(directory, "manifest.json")
    m = json.load(open(manifest))
    m["files"]["../../outside"] = m["files"].pop("engine.bin")
    with open(manifest, "w") as f:
        json.dump(m, f)
    with pytest.raises(CheckpointError, match="lists a file outside its checkpoint"):
        load_checkpoint(prefix)
