"""Measured backend choice: the first call of an op for a key (device name, dtype, shape bucket, forward or
forward+backward) times every backend that can run it and keeps the fastest, in memory and on disk.

* On by default on CUDA, where nobody has measured which backend wins on which card. On CPU by default only for the
  calls where the fixed rule may lose: those a backend's ``measure_when`` flags (the C++ TLAB kernel parallelises
  over (batch, head) problems, and over row blocks of a problem, with a fork-join per phase, only when there are
  at most half as many problems as threads, so a call with fewer large problems than threads is measured against
  the reference, whose matmuls use every thread). ``AVER_FAST_AUTOTUNE=1`` turns it on for every call on every
  device, ``=0`` off everywhere (the fixed priority rule). ``backend=`` always wins.
* Timing: warm-up (on CPU :data:`CPU_WARMUP` seconds of calls: after a single-threaded kernel, the other cores
  take a moment to catch up), then the median of :data:`REPEATS` calls (CUDA events on a GPU; on CPU, wall clock
  over at least :data:`CPU_WINDOW` seconds per round), in :data:`ROUNDS` rounds that alternate the candidates (each
  going first in turn), each one's fastest round kept (a slow spell of a shared machine only adds time); when an
  input requires grad, forward and backward are timed together. The reference is always a candidate, and another
  backend is kept only when it measured at least 5% faster (:data:`KEEP_MARGIN`): a near tie goes to the
  reference, since noise can measure it the wrong way round (on a shared VM such ties, a lone L = 256 problem on
  one thread against the reference's matmuls on two, were kept at 0.78-0.89x the reference in
  `benchmarks/test_cpu_choice.py`).
* The disk cache is one JSON file per (aver_fast, torch, triton) versions under ``$AVER_FAST_CACHE_DIR`` (default
  ``~/.cache/aver_fast``), written atomically; an unreadable file is ignored with a warning and rewritten. A CPU's
  keys name its model, the C++ kernels' instruction set and torch's thread count, which all change the answer.
* Never while torch.compile traces, while a CUDA graph is captured, or on meta/fake tensors (the fixed rule runs).
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import torch

from ..cpu import model_name
from ._functorch import needs_grad  # a call that builds a graph: its backward is timed and keyed too

ENV_VAR = "AVER_FAST_AUTOTUNE"
CACHE_ENV = "AVER_FAST_CACHE_DIR"
REPEATS = 5
ROUNDS = 6
CPU_WINDOW = 0.02
CPU_WARMUP = 0.005  # seconds of calls before each CPU round: an idle core and its thread take ~1-2 ms to catch up
KEEP_MARGIN = 0.95  # a backend other than the reference is kept only at or below this fraction of its time
MAX_CACHE_BYTES = 1 << 20  # a table of a few hundred keys; a larger file is not ours
_MEMORY: dict[str, str] = {}
_LOADED: set[str] = set()


def enabled(device: torch.device, doubtful: bool | Callable[[], bool] = False) -> bool:
    """Whether this call's backend is chosen by measurement: everywhere with ``AVER_FAST_AUTOTUNE=1``, on CUDA and
    for ``doubtful`` calls by default (a callable is asked last, never while torch.compile traces), never with
    ``=0``, while torch.compile traces or a CUDA graph is captured."""
    flag = os.environ.get(ENV_VAR, "")
    if flag == "0" or torch.compiler.is_compiling():
        return False
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return False
    if flag == "1" or device.type == "cuda":
        return True
    return bool(doubtful() if callable(doubtful) else doubtful)


@functools.cache
def _versions() -> str:
    from .._version import __version__

    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "none"
    return f"aver_fast-{__version__}_torch-{torch.__version__}_triton-{tv}".replace("+", "-")


def cache_path() -> str:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "aver_fast")
    return os.path.join(root, f"backends_{_versions()}.json")


def _load(path: str) -> None:
    if path in _LOADED:
        return
    _LOADED.add(path)
    try:
        if os.path.getsize(path) > MAX_CACHE_BYTES:
            raise ValueError(f"{os.path.getsize(path)} bytes, more than a backend table holds")
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("not a {key: backend} table")
    except FileNotFoundError:
        return
    except Exception as e:  # noqa: BLE001 -- any damage (bad JSON, nesting too deep, binary): the cache is a hint
        warnings.warn(f"aver_fast: ignoring the backend cache {path} ({type(e).__name__}: {str(e)[:120]}); it "
                      f"will be rewritten", stacklevel=3)
        return
    for k, v in data.items():
        _MEMORY.setdefault(k, v)


def _save(path: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".backends-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(sorted(_MEMORY.items())), f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a read-only home: the choice still holds in memory for this process
        warnings.warn(f"aver_fast: cannot write the backend cache {path}: {e}", stacklevel=3)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        from . import _ext
        return f"cpu {model_name()} {_ext.cpu_isa() or 'no-cpp'} {torch.get_num_threads()} threads"
    return device.type


def _bucket(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return "x".join(str(1 << max(0, int(n) - 1).bit_length()) for n in x.shape) or "scalar"
    if isinstance(x, float):
        return "f"  # a scale: not a different problem
    return repr(x)


def key(op: str, device: torch.device, dtype: torch.dtype, args: tuple) -> str:
    shapes = ",".join(_bucket(a) for a in args)
    mode = "fwd+bwd" if needs_grad(args) else "fwd"
    return f"{op}|{_device_name(device)}|{str(dtype).removeprefix('torch.')}|{shapes}|{mode}"


def _default_timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def timed(fn: Callable[[], object]) -> float:
        fn()  # warm-up (and compilation of Triton kernels)
        if device.type == "cpu":  # a single-threaded kernel left the other cores idle: a multi-threaded candidate's
            start = time.perf_counter()  # first calls after it ran up to 1.5x slower (measured, 2 vCPUs)
            while time.perf_counter() - start < CPU_WARMUP:
                fn()
        times = []
        for _ in range(REPEATS):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) * 1e-3)
            else:
                t = time.perf_counter()
                n = 0
                while n == 0 or time.perf_counter() - t < CPU_WINDOW / REPEATS:
                    fn()
                    n += 1
                times.append((time.perf_counter() - t) / n)
        return statistics.median(times)
    return timed


TIMER: Callable[[torch.device], Callable[[Callable[[], object]], float]] = _default_timer  # tests inject theirs


def _call(backend, args: tuple) -> Callable[[], object]:
    """One timed call: fresh leaves for the tensors that require grad, and a backward when any does."""
    grad = needs_grad(args)

    def run() -> None:
        if not grad:
            with torch.no_grad():
                backend.fn(*args)
            return
        leaves = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
        out = backend.fn(*leaves)
        out.backward(torch.ones_like(out))
    run.backend = backend.name  # what an injected timer may look at
    return run


_KEYS: dict[tuple, str] = {}  # a call's exact signature -> its key (building a key costs more than the lookup)
MAX_KEYS = 4096  # exact signatures remembered (variable-length inputs make many); then the memo starts afresh


def _memo_key(op: str, device: torch.device, dtype: torch.dtype, args: tuple) -> str:
    from . import _ext

    sig = (op, device, dtype, needs_grad(args), torch.get_num_threads(), _ext.cpu_isa(),
           repr([a.shape if isinstance(a, torch.Tensor) else "f" if isinstance(a, float) else a for a in args]))
    k = _KEYS.get(sig)
    if k is None:
        if len(_KEYS) >= MAX_KEYS:
            _KEYS.clear()
        k = _KEYS[sig] = key(op, device, dtype, args)
    return k


def choose(op: str, device: torch.device, dtype: torch.dtype, eligible: list, args: tuple):
    """The eligible backend that measured fastest for this call's key (measured now if the key is new)."""
    if any(isinstance(a, torch.Tensor) and (a.is_meta or type(a) is not torch.Tensor and
                                             "Fake" in type(a).__name__) for a in args):
        return eligible[0]
    k = _memo_key(op, device, dtype, args)
    kept = _MEMORY.get(k)
    for b in eligible:
        if b.name == kept:
            return b
    by_name = {b.name: b for b in eligible}
    path = cache_path()
    _load(path)  # another process may have measured it
    if _MEMORY.get(k) in by_name:
        return by_name[_MEMORY[k]]
    timer = TIMER(device)
    rounds: dict[str, list[float]] = {b.name: [] for b in eligible}
    for r in range(ROUNDS):
        for b in eligible if r % 2 == 0 else eligible[::-1]:  # each goes first in turn (after the other's load)
            if b.name not in rounds:
                continue
            try:
                rounds[b.name].append(timer(_call(b, args)))
            except Exception as e:  # a backend that fails here (say, a kernel this GPU cannot run) is not chosen
                if b.name == "reference":
                    raise
                del rounds[b.name]
                warnings.warn(f"aver_fast: backend {b.name!r} of {op} failed while being measured "
                              f"({type(e).__name__}: {e}); it is not used for {k}", stacklevel=4)
    times = {name: min(t) for name, t in rounds.items()}
    fastest = min(times, key=times.get)
    if "reference" in times and times[fastest] > KEEP_MARGIN * times["reference"]:
        fastest = "reference"  # a near tie, which noise could have measured the wrong way round
    _MEMORY[k] = fastest
    _save(path)
    return by_name[_MEMORY[k]]


def choices(op: str, device: torch.device) -> dict[str, str]:
    """The measured choices held for ``op`` on ``device`` (this process's and the disk cache's)."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return {}
    _load(cache_path())
    prefix = f"{op}|{_device_name(device)}|"
    return {k: v for k, v in sorted(_MEMORY.items()) if k.startswith(prefix)}
