"""Which backend runs an op.

Backends, in priority order: ``triton`` (``aver_fast.kernels``), ``cpp`` (compiled CPU kernels in ``aver_fast._C``),
``sdpa`` (TLAB only: PyTorch's fused attention kernels, for calls that need no gradient; picked automatically on
CUDA only) and ``reference`` (pure PyTorch, always available). On CUDA the ``torch.ops.aver_fast.*`` ops also
dispatch to the Triton kernels.

Selection for ``(op, device, dtype)``:

1. the ``backend=`` keyword of the op, else the innermost :func:`using_backend` block, else the
   ``AVER_FAST_BACKEND`` environment variable (read at each call); an explicitly requested backend that cannot run
   raises ``RuntimeError`` saying why;
2. otherwise, where autotuning is on (on CUDA; on CPU for the calls the first eligible backend's ``measure_when``
   flags; everywhere with ``AVER_FAST_AUTOTUNE=1``; nowhere with ``=0``), the backend that measured fastest for this
   (device name, dtype, shape bucket, forward or forward+backward), among those that can run the call: the first
   call of each key times every one (see :mod:`aver_fast.ops._autotune`);
3. otherwise the first backend in priority order that is available and supports the device, dtype and arguments
   (Triton is picked automatically on CUDA only: on CPU it runs in the interpreter, for testing, when asked for);
4. ``reference`` as the last resort.

Under forward-mode AD (``torch.autograd.forward_ad``, outside torch.func) every op runs its reference, the only
backend that carries tangents; a requested fused backend raises there.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from . import _autotune, _functorch

BACKENDS = ("triton", "cpp", "sdpa", "reference")
ENV_VAR = "AVER_FAST_BACKEND"


@dataclass
class Backend:
    """One way of running one op.

    ``available()`` returns ``None`` when the backend can run at all, else the reason it cannot;
    ``supports(device, dtype)`` returns ``None`` when it can run on that device and dtype, else the reason;
    ``accepts(*args)`` sees the op's arguments (shapes, settings) and returns ``None`` or the reason it cannot;
    ``measure_when(*args)`` is True for calls where this backend, first by priority, may still be slower than the
    reference (they are then measured, on any device, unless ``AVER_FAST_AUTOTUNE=0``).
    """

    name: str
    fn: Callable
    available: Callable[[], str | None] = lambda: None
    supports: Callable[[torch.device, torch.dtype], str | None] = lambda *_: None
    accepts: Callable[..., str | None] = lambda *_: None
    auto_devices: tuple[str, ...] | None = None  # device types where automatic selection may pick it (None = all)
    requested_only: str = ""  # why automatic selection leaves it out where auto_devices does (backends() says it)
    precision: Callable[[torch.device, torch.dtype], str | None] = lambda *_: None  # how it computes a dtype
    measure_when: Callable[..., bool] = lambda *_: False


@dataclass
class OpEntry:
    name: str
    backends: dict[str, Backend] = field(default_factory=dict)


_OPS: dict[str, OpEntry] = {}
_USING: contextvars.ContextVar[str | None] = contextvars.ContextVar("aver_fast_backend", default=None)
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


_AUTO: dict[tuple, list[Backend]] = {}  # (op, device, dtype) -> backends automatic selection may pick, by priority


def register(op: str, backend: Backend) -> None:
    """Register ``backend`` for ``op`` (replacing an earlier one of the same name)."""
    if backend.name not in BACKENDS:
        raise ValueError(f"unknown backend {backend.name!r}; expected one of {BACKENDS}")
    _OPS.setdefault(op, OpEntry(op)).backends[backend.name] = backend
    _AUTO.clear()


def _automatic(op: str, device: torch.device, dtype: torch.dtype) -> list[Backend]:
    """The backends of ``op`` that automatic selection may pick on ``device`` for ``dtype``, in priority order,
    before their arguments are seen (what a build and a machine can run does not change while a process runs)."""
    key = (op, device, dtype)
    found = _AUTO.get(key)
    if found is None:
        entry = _OPS[op]
        candidates = [entry.backends[name] for name in BACKENDS if name in entry.backends]
        found = _AUTO[key] = [b for b in candidates if (b.auto_devices is None or device.type in b.auto_devices)
                              and _why_not(b, device, dtype) is None]
    return found


def _why_not(b: Backend | None, device: torch.device, dtype: torch.dtype, args: tuple | None = None) -> str | None:
    if b is None:
        return "not implemented for this op"
    reason = b.available()
    if reason is None:
        reason = b.supports(device, dtype)
    if reason is None and args is not None:
        reason = b.accepts(*args)
    return reason


@contextlib.contextmanager
def using_backend(name: str) -> Iterator[None]:
    """Within the block (this thread or task), every op without a ``backend=`` keyword runs on ``name``; e.g.
    ``"reference"`` while exporting, so the graph holds only PyTorch's own operators."""
    requested_backend(name)  # validates
    token = _USING.set(name)
    try:
        yield
    finally:
        _USING.reset(token)


def check_name(backend: str | None, source: str = "backend=") -> str | None:
    """``backend`` if it is None or a backend's name, else ValueError naming where it came from (``source``) and
    the choices."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{source}{backend!r} is not a backend; expected one of {BACKENDS} or None (automatic)")
    return backend


def requested_backend(backend: str | None) -> str | None:
    """The backend the caller asked for: the keyword, else a :func:`using_backend` block, else
    ``$AVER_FAST_BACKEND``, else ``None`` (automatic)."""
    name = backend if backend is not None else _USING.get() or os.environ.get(ENV_VAR) or None
    return check_name(name, "backend=" if backend is not None else f"${ENV_VAR}=")


def _forward_ad() -> bool:
    """Inside ``torch.autograd.forward_ad.dual_level`` outside torch.func (whose ``jvp`` the fused ops support through
    :mod:`aver_fast.ops._functorch`): the fused ops' autograd would drop the tangents."""
    return _functorch.forward_mode() and torch._C._functorch.peek_interpreter_stack() is None


def select(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None,
           args: tuple | None = None) -> Backend:
    """The backend that runs ``op`` on ``device``/``dtype`` (for ``args``, when given); see the module docstring."""
    entry = _OPS[op]
    name = requested_backend(backend)
    if _forward_ad():
        if name not in (None, "reference"):
            raise RuntimeError(f"aver_fast.{op}: backend {name!r} was requested but cannot run under forward-mode AD "
                               "(torch.autograd.forward_ad): only the reference carries tangents; use torch.func.jvp")
        return _observed(op, entry.backends["reference"])
    if name is not None:
        b = entry.backends.get(name)
        reason = _why_not(b, device, dtype, args)
        if reason is not None:
            raise RuntimeError(f"aver_fast.{op}: backend {name!r} was requested but cannot run on "
                               f"{device.type}/{dtype}: {reason}")
        return _observed(op, b)
    eligible = [b for b in _automatic(op, device, dtype) if args is None or b.accepts(*args) is None]
    if len(eligible) > 1 and args is not None and _autotune.enabled(device, lambda: eligible[0].measure_when(*args)):
        return _observed(op, _autotune.choose(op, device, dtype, eligible, args))
    return _observed(op, eligible[0])  # the reference supports everything, so there is always one


def backends(devices: tuple[str, ...] = ("cpu", "cuda"), dtype: torch.dtype = torch.float32) -> dict:
    """Report, per op and device, which backend would run (for ``dtype``) and why the others would not.

    Returns ``{op: {device: {"selected": name, "reasons": {backend: None | reason}, "requested_only": {backend:
    why}, "precision": {backend: how}, "measured": {key: name}}}}``; ``selected`` is the fixed rule's choice,
    ``requested_only`` the backends that run here only when asked for, ``precision`` how those that run compute
    ``dtype`` where it is not simply in ``dtype`` (e.g. bfloat16 in float32), ``measured`` the autotuned choices
    cached for that device.
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
            manual = {name: b.requested_only for name, b in entry.backends.items() if reasons[name] is None
                      and b.auto_devices is not None and dev not in b.auto_devices and b.requested_only}
            precision = {name: how for name, b in entry.backends.items()
                         if reasons[name] is None and (how := b.precision(device, dtype))}
            report[op][dev] = {"selected": selected, "reasons": reasons, "requested_only": manual,
                               "precision": precision, "measured": _autotune.choices(op, device)}
    return report
