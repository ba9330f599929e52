"""`pytest benchmarks -k choice`: the automatic CPU choice never keeps a kernel slower than the reference.

Sweeps `tlab_attention` over L 8-256, D 32-256 and batch x heads 1-128 (up to 2^28 multiply-adds per call), forward
and forward+backward, on every instruction set of the C++ kernels this CPU runs (an AVX-512 machine checks the AVX2
build too), and `log_mel` over 1-64 clips. Each case alternates the automatic choice and the reference (both through
the public op, so the comparison is of the choice, not of the op's argument checks) over several rounds and compares
their fastest rounds (a slow spell of a shared machine only adds time): the case fails when the automatic choice is
the C++ kernel and it is below 0.95x the reference, confirmed by a second measurement. Where the choice is the
reference itself, the ratio is printed (it shows only the selection's few microseconds and the machine's noise).
(`jca_correlation` is GEMM-bound: on CPU its automatic choice is the reference itself.) Prints one line per case:
the ratio, and which backend ran."""
import functools
import itertools
import time

import pytest
import torch

import aver_fast
from aver_fast.ops import _autotune, _ext, _registry

FLOOR = 0.95
ROUNDS = 8
TLAB = [(L, D, n) for L, D, n in itertools.product((8, 16, 32, 64, 128, 256), (32, 64, 128, 256), (1, 8, 32, 128))
        if n * L * L * D <= 1 << 28]


def _isas() -> list[str]:
    """The vector instruction sets of the C++ kernels this CPU runs."""
    if not _ext.LOADED:
        return ["none"]  # the test then fails naming why
    current = _ext.cpu_isa()
    out = []
    for isa in ("avx2", "avx512"):
        try:
            _ext.set_cpu_isa(isa)
            out.append(isa)
        except (RuntimeError, ValueError):
            pass
    _ext.set_cpu_isa(current)
    return out or [current]


ISAS = _isas()


def _per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _ratio(auto, ref) -> float:
    """Fastest round of the reference over the automatic choice's, alternating the two (and which goes first) for
    ROUNDS rounds."""
    auto(), ref()  # first calls: the automatic choice measures here, where it must
    n = max(1, int(0.03 / _per_call(ref, 1)))
    ratio = 0.0
    for _ in range(2):  # a second measurement only to confirm a shortfall
        times = {"auto": [], "ref": []}
        for r in range(ROUNDS):
            for name in ("auto", "ref") if r % 2 == 0 else ("ref", "auto"):
                times[name].append(_per_call(auto if name == "auto" else ref, n))
        ratio = max(ratio, min(times["ref"]) / min(times["auto"]))
        if ratio >= FLOOR:
            break
    return ratio


def _fwd_bwd(fn, inputs, grad):
    def run():
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad)
    return run


@pytest.fixture
def fresh_choices(tmp_path, monkeypatch):
    """Measured choices start empty and go to a folder of this run."""
    monkeypatch.setenv(_autotune.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(_autotune.ENV_VAR, raising=False)
    monkeypatch.setattr(_autotune, "_MEMORY", {})
    monkeypatch.setattr(_autotune, "_LOADED", set())


@pytest.mark.usefixtures("fresh_choices")
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("L, D, n", TLAB, ids=lambda x: str(x))
@pytest.mark.parametrize("isa", ISAS)
def test_tlab_attention_choice_is_never_slower(isa, L, D, n, mode):
    assert _ext.LOADED, _ext.REASON
    previous = _ext.cpu_isa()
    _ext.set_cpu_isa(isa)
    try:
        q, k, v = (torch.randn(n, L, D) for _ in range(3))
        ran = []
        with _registry.observe(lambda _op, backend, _s: ran.append(backend)):
            aver_fast.tlab_attention(*(t.requires_grad_(mode == "fwd+bwd") for t in (q, k, v)))
        reference = functools.partial(aver_fast.tlab_attention, backend="reference")
        if mode == "fwd":
            ratio = _ratio(lambda: aver_fast.tlab_attention(q, k, v), lambda: reference(q, k, v))
        else:
            grad = torch.randn(n, L, D)
            ratio = _ratio(_fwd_bwd(aver_fast.tlab_attention, (q, k, v), grad), _fwd_bwd(reference, (q, k, v), grad))
    finally:
        _ext.set_cpu_isa(previous)
    print(f"tlab_attention {isa} L={L} D={D} n={n} {mode}: {ratio:.2f}x the reference ({ran[-1]}, "
          f"{torch.get_num_threads()} threads)")
    assert ran[-1] == "reference" or ratio >= FLOOR, f"automatic choice ({ran[-1]}) at {ratio:.2f}x the reference"


@pytest.mark.usefixtures("fresh_choices")
@pytest.mark.parametrize("clips", [1, 4, 16, 64])
def test_log_mel_choice_is_never_slower(clips):
    x = torch.randn(clips, 45599)
    ratio = _ratio(lambda: aver_fast.log_mel(x), lambda: aver_fast.log_mel(x, backend="reference"))
    print(f"log_mel {clips} clips: {ratio:.2f}x the reference ({_ext.cpu_isa()}, {torch.get_num_threads()} threads)")
    assert ratio >= FLOOR
