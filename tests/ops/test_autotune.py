"""The measured backend choice (aver_fast/ops/_autotune.py), exercised on CPU with the cpp and reference backends
and an injected timer: the fastest eligible backend is kept per key, in memory and on disk; the cache survives a
new process and a corrupt file; AVER_FAST_AUTOTUNE=0 and backend= still rule."""
import json
import os
import warnings

import pytest
import torch

import aver_fast
from aver_fast.ops import _autotune, _registry

from ._parity import require_cpp


@pytest.fixture
def tune(tmp_path, monkeypatch):
    """Autotuning on for CPU, a private cache folder, an empty memory and a timer that reads ``seconds``."""
    require_cpp()
    monkeypatch.setenv(_autotune.ENV_VAR, "1")
    monkeypatch.setenv(_autotune.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_autotune, "_MEMORY", {})
    monkeypatch.setattr(_autotune, "_LOADED", set())
    monkeypatch.setattr(_autotune, "ROUNDS", 1)  # the injected timer is exact
    state = {"seconds": {"cpp": 1.0, "reference": 2.0}, "timed": []}

    def timer(_device):
        def timed(fn):
            fn()
            state["timed"].append(fn.backend)
            return state["seconds"][fn.backend]
        return timed
    monkeypatch.setattr(_autotune, "TIMER", timer)
    return state


def _select(q):
    return _registry.select("tlab_attention", q.device, q.dtype, None, (q, q, q, 0.5)).name


def test_the_faster_backend_is_kept_per_key_and_timed_once(tune):
    q = torch.randn(2, 16, 8)
    tune["seconds"] = {"cpp": 3.0, "reference": 1.0}  # the fused kernel measured slower: never kept
    assert _select(q) == "reference"
    assert sorted(tune["timed"]) == ["cpp", "reference"]
    assert _select(q) == "reference" and len(tune["timed"]) == 2  # cached: not timed again
    assert _select(torch.randn(2, 15, 8)) == "reference" and len(tune["timed"]) == 2  # same bucket (L 15 -> 16)
    tune["seconds"] = {"cpp": 1.0, "reference": 3.0}
    assert _select(torch.randn(2, 100, 8)) == "cpp"  # another bucket: measured anew
    assert _select(q.requires_grad_()) == "cpp" and len(tune["timed"]) == 6  # forward+backward is its own key
    keys = list(json.loads(open(_autotune.cache_path()).read()))
    assert any(k.endswith("|fwd+bwd") for k in keys) and any(k.endswith("|fwd") for k in keys)
    measured = aver_fast.backends()["tlab_attention"]["cpu"]["measured"]
    assert set(measured.values()) == {"reference", "cpp"} and len(measured) == 3


def test_the_disk_cache_survives_the_process_and_damage(tune, monkeypatch):
    q = torch.randn(2, 16, 8)
    tune["seconds"] = {"cpp": 3.0, "reference": 1.0}
    assert _select(q) == "reference"
    monkeypatch.setattr(_autotune, "_MEMORY", {})  # a new process
    monkeypatch.setattr(_autotune, "_LOADED", set())
    tune["timed"].clear()
    assert _select(q) == "reference" and tune["timed"] == []  # read from disk, not timed
    path = _autotune.cache_path()
    with open(path, "w") as f:
        f.write("{not json")
    monkeypatch.setattr(_autotune, "_MEMORY", {})
    monkeypatch.setattr(_autotune, "_LOADED", set())
    with pytest.warns(UserWarning, match="ignoring the backend cache"):
        assert _select(q) == "reference"
    assert len(tune["timed"]) == 2 and json.loads(open(path).read())  # measured again and rewritten


def test_off_switch_forced_backend_and_no_timing_while_compiling(tune, monkeypatch):
    q = torch.randn(2, 16, 8)
    tune["seconds"] = {"cpp": 3.0, "reference": 1.0}
    monkeypatch.setenv(_autotune.ENV_VAR, "0")
    assert _select(q) == "cpp" and tune["timed"] == []  # the fixed rule
    monkeypatch.setenv(_autotune.ENV_VAR, "1")
    assert _registry.select("tlab_attention", q.device, q.dtype, "cpp", (q, q, q, 0.5)).name == "cpp"
    assert tune["timed"] == []  # a forced backend is not measured
    torch.testing.assert_close(aver_fast.tlab_attention(q, q, q), aver_fast.tlab_attention(q, q, q, backend="cpp"))
    monkeypatch.delenv(_autotune.ENV_VAR)
    assert not _autotune.enabled(torch.device("cpu"))  # off on CPU by default (the fixed rule is deterministic)
    assert _autotune.enabled(torch.device("cpu"), doubtful=True)  # ... but for calls where it may lose


@pytest.mark.usefixtures("tune")
def test_results_do_not_depend_on_the_measurement():
    """Whatever backend wins, the op's result is the op's (both backends agree within the parity tolerance)."""
    q = torch.randn(2, 2, 16, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = aver_fast.tlab_attention(q, q, q)
    torch.testing.assert_close(out, aver_fast.tlab_attention(q, q, q, backend="reference"), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("tune")
def test_a_backend_that_fails_while_measured_is_not_chosen(monkeypatch):
    q = torch.randn(2, 16, 8)
    real = _autotune._call

    def failing(backend, args):
        if backend.name == "cpp":
            def boom():
                raise RuntimeError("no kernel image for this GPU")
            boom.backend = "cpp"
            return boom
        return real(backend, args)
    monkeypatch.setattr(_autotune, "_call", failing)
    with pytest.warns(UserWarning, match="backend 'cpp' of tlab_attention failed while being measured"):
        assert _select(q) == "reference"


@pytest.mark.parametrize("content", [b"[" * 100000, b"\x00\xff" * 10, b'{"k": ' * 5000, b"[]"],
                         ids=["deep-nesting", "binary", "deep-object", "not-a-table"])
@pytest.mark.usefixtures("tune")
def test_a_damaged_cache_of_any_kind_is_ignored_with_a_warning(content):
    """Was: a deeply nested file raised RecursionError on every op call and in `aver-fast backends`."""
    path = _autotune.cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    q = torch.randn(2, 2, 8, 16)
    with pytest.warns(UserWarning, match="ignoring the backend cache"):
        out = aver_fast.tlab_attention(q, q, q)
    assert out.shape == q.shape and json.load(open(path))  # measured, and the file rewritten as a table
    _autotune._LOADED.clear()
    with open(path, "wb") as f:
        f.write(content)
    with pytest.warns(UserWarning, match="ignoring the backend cache"):  # what `aver-fast backends` reads
        assert isinstance(_autotune.choices("tlab_attention", torch.device("cpu")), dict)


def test_on_cpu_by_default_only_calls_with_fewer_large_problems_than_threads_are_measured(tune, monkeypatch):
    """The C++ kernel parallelises over (batch, head) problems (and splits the rows of a lone one, a fork-join per
    phase): a lone large problem may go faster in the reference, whose matmuls use every thread, so that call (only)
    is measured, and the faster one kept."""
    from aver_fast.ops.tlab_attention import MEASURED_WORK

    monkeypatch.delenv(_autotune.ENV_VAR)  # the default
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        tune["seconds"] = {"cpp": 3.0, "reference": 1.0}
        assert _select(torch.randn(8, 16, 256)) == "cpp" and tune["timed"] == []  # as many problems as threads
        assert _select(torch.randn(1, 16, 16)) == "cpp" and tune["timed"] == []  # a lone small problem
        lone = torch.randn(1, 64, MEASURED_WORK // 64 ** 2)
        assert _select(lone) == "reference" and sorted(tune["timed"]) == ["cpp", "reference"]
        key = next(iter(_autotune.choices("tlab_attention", lone.device)))
        assert f"{aver_fast.ops._ext.cpu_isa()} 4 threads" in key  # the answer depends on both
        monkeypatch.setenv(_autotune.ENV_VAR, "0")
        assert _select(lone) == "cpp"  # the fixed rule
    finally:
        torch.set_num_threads(threads)


def test_rounds_alternate_the_candidates_and_keep_their_fastest(tune, monkeypatch):
    """A slow spell of a shared machine during one round does not decide: each candidate's fastest round counts, and
    the candidates take turns at going first."""
    monkeypatch.setattr(_autotune, "ROUNDS", 3)
    spells = iter([9.0, 3.0, 3.0, 2.0, 2.5, 3.0])  # cpp, reference, reference, cpp, ...: cpp's first round is slow

    def timer(_device):
        def timed(fn):
            fn()
            tune["timed"].append(fn.backend)
            return next(spells)
        return timed
    monkeypatch.setattr(_autotune, "TIMER", timer)
    assert _select(torch.randn(2, 16, 8)) == "cpp"  # 2.0 vs 3.0, although its first round was the slowest
    assert tune["timed"] == ["cpp", "reference", "reference", "cpp", "cpp", "reference"]  # each goes first in turn


def test_a_near_tie_goes_to_the_reference(tune):
    """Another backend must measure at least 5% faster than the reference to be kept: within noise, the reference
    (never slower than itself) wins."""
    tune["seconds"] = {"cpp": 0.97, "reference": 1.0}
    assert _select(torch.randn(2, 16, 8)) == "reference"
    tune["seconds"] = {"cpp": 0.94, "reference": 1.0}
    assert _select(torch.randn(2, 100, 8)) == "cpp"  # another bucket, measured anew
