"""Checkpoints that cannot run code when loaded and cannot be lost to a crash.

A checkpoint is one directory, ``RUN/.checkpoints/<name>-<id>/``, holding

* ``model.safetensors`` (weights), ``state.safetensors`` (every tensor of the training state: optimizer, RNG),
* ``meta.json`` (the rest of the state: config, split, progress, history; tensors referenced by key),
* ``manifest.json`` (format version and the SHA-256 of each file above).

Nothing in it can carry code (no pickle). A save writes the directory under a temporary name, fsyncs every file
and the directory, renames it, then switches the symlink ``RUN/<name>`` (``RUN/last``, ``RUN/best``) to it
atomically; a crash at any instant leaves ``RUN/<name>`` pointing at the old or the new checkpoint, both complete.
Loading verifies every checksum and names the damaged file. :func:`remove_stale` clears what a crash left behind.

Checkpoints of aver_fast 0.1 (``RUN/last.safetensors`` + ``RUN/last.state.pt``, a pickle) are refused unless the
user opts in with ``AVER_FAST_TRUST_PICKLE=1``; the next save writes the new format.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import random
import re
import shutil
import stat
import uuid
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors

if TYPE_CHECKING:
    from .training.config import TrainConfig

FORMAT = 1
STORE = ".checkpoints"  # RUN/.checkpoints/<name>-<id>/ holds the checkpoint directories
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "state.safetensors", "meta.json")
TRUST_PICKLE_ENV = "AVER_FAST_TRUST_PICKLE"
_TMP = ".tmp-"  # prefix (directories) and infix (links, legacy files) of a save in progress
LOG = "log.jsonl"  # the run's log, appended to by train
LINKS = ("last", "best")  # the checkpoint links of a run
MAX_MANIFEST_BYTES = 1 << 20  # a manifest is a few hundred bytes; anything larger is not one
# what save_checkpoint creates, and so all that remove_stale may delete: directories in the store, link temporaries
_OWN_DIR = re.compile(r"^(\.tmp-)?[\w.-]+-[0-9a-f]{12}$")
_OWN_LINK_TMP = re.compile(r"^[\w.-]+\.tmp-\d+$")
_EXTRA_FILE = re.compile(r"^\w[\w.-]*$")  # more files of a checkpoint: plain names inside its directory


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# -------------------------------------------------- state <-> (JSON skeleton, tensors); no type can carry code
def _encode(obj, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"$tensor": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.astype(np.int64) if obj.dtype.kind == "u" else obj).clone()
        return {"$ndarray": key, "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"$items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state cannot hold a {type(obj).__name__}")


def _decode(obj, tensors: dict):
    if isinstance(obj, list):
        return [_decode(x, tensors) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if "$tensor" in obj:
        return tensors[obj["$tensor"]]
    if "$ndarray" in obj:
        return tensors[obj["$ndarray"]].numpy().astype(obj["dtype"])
    if "$tuple" in obj:
        return tuple(_decode(x, tensors) for x in obj["$tuple"])
    if "$items" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["$items"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ------------------------------------------------------------------------------------------------- ownership
def _store(run: str) -> str:
    """The run's own checkpoint store ``RUN/.checkpoints`` (real path); a store that is a link or not a folder is
    refused, so two runs can never share (and wipe) one."""
    store = os.path.join(run, STORE)
    if os.path.islink(store) or (os.path.lexists(store) and not os.path.isdir(store)):
        raise CheckpointError(f"{store} is not a folder of this run (a link or a file): aver_fast deletes only "
                              f"inside its own checkpoint store; move it away or use another output folder")
    return os.path.join(os.path.realpath(run), STORE)


def _owned(run: str, target: str) -> bool:
    """Whether ``target`` (resolved) is a checkpoint directory directly inside ``run``'s own store."""
    return os.path.dirname(os.path.realpath(target)) == _store(run)


def check_link(path: str) -> None:
    """Refuse, in one line, to replace ``path`` (``RUN/last``, ``RUN/best``) unless it is absent or a link into
    the run's own store: a folder, a file, or a link elsewhere is never replaced (nor what it points at deleted)."""
    path = os.path.abspath(path)
    run = os.path.dirname(path)
    if not os.path.lexists(path):
        return
    if not os.path.islink(path):
        raise CheckpointError(f"{path} exists and is not a checkpoint link; move it away or save elsewhere")
    if not _owned(run, path):
        raise CheckpointError(f"{path} is a link to {os.readlink(path)}, outside {os.path.join(run, STORE)}: "
                              f"aver_fast replaces only its own checkpoint links; move it away or save elsewhere")


def check_run(run: str, links: tuple[str, ...] = LINKS) -> None:
    """Everything a training run will write in ``run`` is its own to write (call before any work): the store is a
    folder of the run, ``last``/``best`` are absent or links into it, the log is absent or a regular file."""
    _store(run)
    for name in links:
        check_link(os.path.join(run, name))
    log = os.path.join(run, LOG)
    if os.path.islink(log) or (os.path.lexists(log) and not os.path.isfile(log)):
        raise CheckpointError(f"{log} is not a regular file of this run (a link or a folder); move it away")


# ------------------------------------------------------------------------------------------------------- saving
def _mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _switch_link(link: str, target: str) -> None:
    """Point the symlink ``link`` at ``target`` (relative to its folder) in one atomic rename."""
    tmp = f"{link}{_TMP}{os.getpid()}"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(os.path.dirname(link))


def _referenced(run: str) -> set[str]:
    """Checkpoint directories (real paths) that a symlink in ``run`` points at."""
    out = set()
    for entry in os.scandir(run):
        if entry.is_symlink():
            out.add(os.path.realpath(entry.path))
    return out


def save_checkpoint(path: str, model: torch.nn.Module, state: dict, files: dict[str, bytes] | None = None) -> str:
    """Write ``model``'s weights and ``state`` (plus the RNG state) as the checkpoint ``path`` (e.g. ``RUN/last``),
    with ``files`` (name -> contents: more files the manifest checks, e.g. an int8 engine's models).

    Returns the checkpoint directory. Raises :class:`CheckpointError` naming the file (and, when the disk is full,
    the filesystem) if it cannot be written; the previous checkpoint of that name is then untouched.
    """
    path = os.path.abspath(path)
    run, name = os.path.split(path)
    files = files or {}
    bad = [f for f in files if not _EXTRA_FILE.match(f) or f in (*FILES, MANIFEST)]
    if bad:
        raise ValueError(f"checkpoint file names must be plain and new (letters, digits, '.', '-', '_'), got {bad}")
    check_link(path)
    _store(run)  # never write into (or later clean) a store shared through a link
    store = os.path.join(run, STORE)
    ckpt_id = uuid.uuid4().hex[:12]
    tmp = os.path.join(store, f"{_TMP}{name}-{os.getpid()}-{ckpt_id}")
    final = os.path.join(store, f"{name}-{ckpt_id}")
    current = tmp
    try:
        os.makedirs(tmp)
        tensors: dict = {}
        meta = {"format": FORMAT, "state": _encode(dict(state, rng=rng_state()), tensors)}
        blobs = {
            "model.safetensors": save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                                              metadata={"format": str(FORMAT)}),
            "state.safetensors": save_tensors(tensors),
            "meta.json": json.dumps(meta).encode(),
            **files,
        }
        manifest = {"format": FORMAT, "files": {f: hashlib.sha256(b).hexdigest() for f, b in blobs.items()},
                    "sizes": {f: len(b) for f, b in blobs.items()}}
        blobs[MANIFEST] = json.dumps(manifest, indent=1).encode()
        for fname, data in blobs.items():
            current = os.path.join(tmp, fname)
            _write_file(current, data)
        current = tmp
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(store)
        current = path
        old = os.path.realpath(path) if os.path.islink(path) and _owned(run, path) else None
        _switch_link(path, os.path.join(STORE, os.path.basename(final)))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.realpath(path) != final:  # renamed but never published
            shutil.rmtree(final, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise CheckpointError(f"no space left on device {_mount_point(run)} while writing {current}") from None
        raise CheckpointError(f"cannot write checkpoint file {current}: {e.strerror or e}") from None
    if old and old not in _referenced(run) and _owned(run, old):
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_run(path: str, model: torch.nn.Module, config: TrainConfig, split: dict, *, epoch: int, batch: int = 0,
             best: dict | None = None, history: list | None = None, **training_state) -> str:
    """The checkpoint of a run that ``evaluate``, ``predict``, ``extract-features`` and ``train --resume`` load:
    the weights, the run's config and architecture (``config.arch()``), the video split and the progress (``epoch``
    finished, ``batch`` of the next epoch done, ``best`` validation metrics, ``history``), plus ``training_state``
    (optimizer, scheduler, epoch statistics) when training wrote it."""
    state = {"config": dataclasses.asdict(config), "arch": config.arch(), "split": split, "epoch": epoch,
             "batch": batch, "best": best, "history": history or [], **training_state}
    return save_checkpoint(path, model, state)


def remove_stale(run: str) -> list[str]:
    """Remove what interrupted saves left in ``run``: temporary directories, links and files, and checkpoint
    directories no link points at. Only what :func:`save_checkpoint` creates is touched: real directories named as
    it names them inside the run's own store (never a link, nor anything a link leads to) and its link temporaries.
    Returns the removed paths. Call it when no other process saves there."""
    if not os.path.isdir(run):
        return []
    removed = []
    store = _store(run)
    referenced = _referenced(run)
    for entry in sorted(os.scandir(store), key=lambda e: e.name) if os.path.isdir(store) else []:
        if (entry.is_dir(follow_symlinks=False) and _OWN_DIR.match(entry.name)
                and os.path.join(store, entry.name) not in referenced):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    for entry in os.scandir(run):  # link temporaries of an interrupted _switch_link
        if entry.is_symlink() and _OWN_LINK_TMP.match(entry.name):
            os.remove(entry.path)
            removed.append(entry.path)
    return removed


# ------------------------------------------------------------------------------------------------------ loading
def sha256_file(path: str) -> str:
    """The SHA-256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _regular(path: str, size: int | None, limit: int | None = None) -> None:
    """``path`` is (or links to) a regular file of the expected ``size`` (or at most ``limit`` bytes), checked
    before it is opened: a device, a FIFO or a wrong size would hang or flood the reader."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a device, FIFO or folder): damaged checkpoint")
    if size is not None and st.st_size != size:
        raise CheckpointError(f"{path} is damaged: {st.st_size} bytes where {MANIFEST} records {size}")
    if limit is not None and st.st_size > limit:
        raise CheckpointError(f"{path} is damaged: {st.st_size} bytes, far larger than a {MANIFEST}")


def _manifest(directory: str) -> tuple[dict, dict]:
    """``(files, sizes)`` of ``directory``'s manifest (name -> SHA-256, name -> bytes), checked to be one."""
    mpath = os.path.join(directory, MANIFEST)
    if not os.path.lexists(mpath):
        raise CheckpointError(f"{directory} is not a checkpoint: {MANIFEST} not found")
    _regular(mpath, None, MAX_MANIFEST_BYTES)
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read(MAX_MANIFEST_BYTES + 1))
        files, sizes = manifest["files"], manifest.get("sizes", {})
        assert isinstance(files, dict) and isinstance(sizes, dict) and manifest["format"] == FORMAT
        assert all(isinstance(v, str) for v in files.values()) and all(type(v) is int for v in sizes.values())
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{mpath} is damaged or of an unknown format (format {FORMAT} expected)") from None
    missing = [f for f in FILES if f not in files]
    if missing:
        raise CheckpointError(f"{mpath} does not list {missing}: damaged checkpoint")
    if not all(isinstance(f, str) and _EXTRA_FILE.match(f) for f in files):
        raise CheckpointError(f"{mpath} lists a file outside its checkpoint: damaged checkpoint")
    return files, sizes


def _verify(directory: str) -> None:
    """Check ``directory``'s manifest and every file's checksum (streamed: a large checkpoint is never held twice
    in memory); raise :class:`CheckpointError` naming the first damaged or missing file."""
    files, sizes = _manifest(directory)
    for fname in files:
        fpath = os.path.join(directory, fname)
        _regular(fpath, sizes.get(fname))
        try:
            digest = sha256_file(fpath)
        except OSError as e:
            raise CheckpointError(f"cannot read checkpoint file {fpath}: {e.strerror or e}") from None
        if digest != files[fname]:
            raise CheckpointError(f"{fpath} is damaged: its checksum differs from {MANIFEST} "
                                  f"({os.path.getsize(fpath)} bytes)")


def read_checkpoint_file(path: str, name: str) -> bytes:
    """The contents of the file ``name`` of the checkpoint ``path`` (one :func:`save_checkpoint` wrote with
    ``files``), checked against the manifest as read, so what is returned is what was saved."""
    directory = str(path).rstrip(os.sep)
    files, sizes = _manifest(directory)
    fpath = os.path.join(directory, name)
    if name not in files:
        raise CheckpointError(f"{os.path.join(directory, MANIFEST)} does not list {name}: damaged checkpoint")
    _regular(fpath, sizes.get(name))
    try:
        with open(fpath, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {fpath}: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != files[name]:
        raise CheckpointError(f"{fpath} is damaged: its checksum differs from {MANIFEST} ({len(data)} bytes)")
    return data


def _load_legacy(prefix: str) -> tuple[dict, dict]:
    """aver_fast 0.1 checkpoints: ``prefix.safetensors`` + ``prefix.state.pt`` (a pickle: only with the opt-in)."""
    wpath, spath = prefix + ".safetensors", prefix + ".state.pt"
    for p in (wpath, spath):
        if not os.path.isfile(p):
            raise CheckpointError(f"checkpoint file not found: {p}")
    if os.environ.get(TRUST_PICKLE_ENV) != "1":
        raise CheckpointError(f"{spath} is an old-format checkpoint stored as a pickle, which can run code when "
                              f"loaded; if you trust its origin, load it once with {TRUST_PICKLE_ENV}=1 (training "
                              f"with --resume then saves it in the safe format)")
    from safetensors import safe_open

    try:
        with safe_open(wpath, "pt") as f:
            wid = (f.metadata() or {}).get("id")
        state = torch.load(spath, map_location="cpu", weights_only=False)
        weights = load_file(wpath)
    except Exception as e:  # any damage: one line, no traceback
        raise CheckpointError(f"cannot read old-format checkpoint {prefix}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or wid != state.get("id"):
        raise CheckpointError(f"{wpath} and {spath} are from different saves (interrupted write?)")
    return weights, state


def checkpoint_digest(path: str) -> str:
    """What identifies the checkpoint ``path`` (``RUN/best``, a directory): the SHA-256 of its manifest, which holds
    the SHA-256 of every file (0.1 format: of its weights file). Outputs record it to say which model made them."""
    path = str(path).rstrip(os.sep)
    target = os.path.join(path, MANIFEST) if os.path.isdir(path) else path + ".safetensors"
    try:
        _regular(target, None)
        return sha256_file(target)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {target}: {e.strerror or e}") from None


def load_checkpoint(path: str) -> tuple[dict, dict]:
    """``(weights, state)`` of the checkpoint ``path`` (``RUN/last``, ``RUN/best`` or a checkpoint directory).

    Never unpickles (see the module docstring for 0.1-format files). Raises :class:`CheckpointError` naming the
    missing or damaged file.
    """
    path = str(path).rstrip(os.sep)
    if os.path.isdir(path):
        _verify(path)
        try:
            weights = load_file(os.path.join(path, "model.safetensors"))
            tensors = load_file(os.path.join(path, "state.safetensors"))
            with open(os.path.join(path, "meta.json"), "rb") as f:
                state = _decode(json.loads(f.read())["state"], tensors)
        except Exception as e:  # checksums matched, so this is a file written by something else
            raise CheckpointError(f"{path}: unreadable checkpoint contents ({type(e).__name__}: {e})") from None
        return weights, state
    if os.path.islink(path):
        raise CheckpointError(f"{path} points at {os.readlink(path)}, which does not exist")
    if os.path.isfile(path + ".safetensors") or os.path.isfile(path + ".state.pt"):
        return _load_legacy(path)
    raise CheckpointError(f"checkpoint not found: {path} (no checkpoint directory or link there)")
