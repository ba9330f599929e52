"""Which backend runs an op.

Backends, fastest first: ``cuda`` (compiled CUDA kernels in ``aver_fast._C``), ``triton`` (``aver_fast.kernels``),
``cpp`` (compiled CPU kernels in ``aver_fast._C``) and ``reference`` (pure PyTorch, always available).

Selection for ``(op, device, dtype)``:

1. the ``backend=`` keyword of the op, else the ``AVER_FAST_BACKEND`` environment variable (read at each call);
   an explicitly requested backend that cannot run raises ``RuntimeError`` saying why;
2. otherwise the first backend in priority order that is available and supports the device, dtype and arguments
   (Triton is picked automatically on CUDA only: on CPU it runs in the interpreter, for testing, when asked for);
3. ``reference`` as the last resort.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

BACKENDS = ("cuda", "triton", "cpp", "reference")
ENV_VAR = "AVER_FAST_BACKEND"


@dataclass
class Backend:
    """One way of running one op.

    ``available()`` returns ``None`` when the backend can run at all, else the reason it cannot;
    ``supports(device, dtype)`` returns ``None`` when it can run on that device and dtype, else the reason;
    ``accepts(*args)`` sees the op's arguments (shapes, settings) and returns ``None`` or the reason it cannot.
    """

    name: str
    fn: Callable
    available: Callable[[], str | None] = lambda: None
    supports: Callable[[torch.device, torch.dtype], str | None] = lambda *_: None
    accepts: Callable[..., str | None] = lambda *_: None
    auto_devices: tuple[str, ...] | None = None  # device types where automatic selection may pick it (None = all)


@dataclass
class OpEntry:
    name: str
    backends: dict[str, Backend] = field(default_factory=dict)


_OPS: dict[str, OpEntry] = {}
_OBSERVERS: list[Callable[[str, str, float], None]] = []


@contextlib.contextmanager
def observe(callback: Callable[[str, str, float], None]) -> Iterator[None]:
    """Within the block, every op call that goes through :func:`select` reports ``callback(op, backend, seconds)``
    (wall time of the backend function; benchmarks use it for the share of a model spent in the ops). Outside
    such a block nothing is timed or wrapped."""
    _OBSERVERS.append(callback)
    try:
        yield
    finally:
        _OBSERVERS.remove(callback)


def _observed(op: str, b: Backend) -> Backend:
    if not _OBSERVERS:
        return b

    def timed(*args):
        start = time.perf_counter()
        out = b.fn(*args)
        for callback in _OBSERVERS:
            callback(op, b.name, time.perf_counter() - start)
        return out
    return dataclasses.replace(b, fn=timed)


def register(op: str, backend: Backend) -> None:
    """Register ``backend`` for ``op`` (replacing an earlier one of the same name)."""
    if backend.name not in BACKENDS:
        raise ValueError(f"unknown backend {backend.name!r}; expected one of {BACKENDS}")
    _OPS.setdefault(op, OpEntry(op)).backends[backend.name] = backend


def _why_not(b: Backend | None, device: torch.device, dtype: torch.dtype, args: tuple | None = None) -> str | None:
    if b is None:
        return "not implemented for this op"
    reason = b.available()
    if reason is None:
        reason = b.supports(device, dtype)
    if reason is None and args is not None:
        reason = b.accepts(*args)
    return reason


def requested_backend(backend: str | None) -> str | None:
    """The backend the caller asked for: the keyword, else ``$AVER_FAST_BACKEND``, else ``None`` (automatic)."""
    name = backend if backend is not None else os.environ.get(ENV_VAR) or None
    if name is not None and name not in BACKENDS:
        source = "backend=" if backend is not None else f"${ENV_VAR}="
        raise ValueError(f"{source}{name!r} is not a backend; expected one of {BACKENDS}")
    return name


def select(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None,
           args: tuple | None = None) -> Backend:
    """The backend that runs ``op`` on ``device``/``dtype`` (for ``args``, when given); see the module docstring."""
    entry = _OPS[op]
    name = requested_backend(backend)
    if name is not None:
        b = entry.backends.get(name)
        reason = _why_not(b, device, dtype, args)
        if reason is not None:
            raise RuntimeError(f"aver_fast.{op}: backend {name!r} was requested but cannot run on "
                               f"{device.type}/{dtype}: {reason}")
        return _observed(op, b)
    for candidate in BACKENDS:
        b = entry.backends.get(candidate)
        if b is None or (b.auto_devices is not None and device.type not in b.auto_devices):
            continue
        if _why_not(b, device, dtype, args) is None:
            return _observed(op, b)
    raise AssertionError(f"no backend for {op}")  # unreachable: reference supports everything


def backends(devices: tuple[str, ...] = ("cpu", "cuda"), dtype: torch.dtype = torch.float32) -> dict:
    """Report, per op and device, which backend would run (for ``dtype``) and why the others would not.

    Returns ``{op: {device: {"selected": name, "reasons": {backend: None | reason}}}}``.
    """
    report: dict = {}
    for op, entry in sorted(_OPS.items()):
        report[op] = {}
        for dev in devices:
            device = torch.device(dev)
            reasons = {name: _why_not(entry.backends.get(name), device, dtype) for name in BACKENDS}
            try:
                selected = select(op, device, dtype).name
            except (RuntimeError, ValueError) as e:
                selected = f"error: {e}"
            report[op][dev] = {"selected": selected, "reasons": reasons}
    return report
