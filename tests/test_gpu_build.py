"""The ahead-of-time compile gate (aver_fast/gpu_build.py, `aver-fast check-gpu-build`): its plans are the ones the
launchers use, it compiles for a named target without a GPU, and it fails what does not fit. (CI runs the whole
quick gate with `make check-gpu-quick`.)"""
import os

import pytest
import torch

from aver_fast import gpu_build
from aver_fast.kernels import _plan
from aver_fast.kernels import jca_correlation as jca_kernel
from aver_fast.kernels import log_mel as mel_kernel
from aver_fast.kernels import tlab_attention as tlab_kernel

KERNELS = {"_tlab_fwd_short", "_tlab_bwd_short", "_attn_fwd", "_attn_bwd_delta", "_attn_bwd_dkdv", "_attn_bwd_dq",
           "_jca_fwd", "_jca_bwd_dxw", "_jca_bwd_dj", "_log_mel_fwd"}


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_every_kernel_is_in_the_sweep_for_every_arch(quick):
    for arch in gpu_build.ARCHS:
        assert {p.kernel.__name__ for p in gpu_build.plans_for(arch, quick)} == KERNELS


def test_the_launchers_launch_only_planned_specializations(monkeypatch):
    """Run the kernels (interpreter) at sweep shapes and record every launch: each is one of the gate's plans."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (set by tests/conftest.py) to run the kernels on CPU")
    monkeypatch.setenv(_plan.TARGET_ENV, "86")
    launched = []
    real = _plan.Plan.launch

    def record(plan, *args):
        launched.append(plan.key())
        return real(plan, *args)
    monkeypatch.setattr(_plan.Plan, "launch", record)
    for L in (17, 65):  # the short path, then the flash path
        q = torch.randn(1, L, 16)
        outs = tlab_kernel.forward(q, q, q, 0.25)
        tlab_kernel.backward(torch.ones_like(q), q, q, q, *outs, 0.25)
    x, w, j = torch.randn(2, 1, 8, 8), torch.randn(2, 8, 8), torch.randn(1, 8, 8)
    jca_kernel.backward(torch.ones(2, 1, 8, 8), jca_kernel.forward(x, w, j, 0.3), x, w, j, 0.3)
    planned = {p.key() for p in gpu_build.plans_for(86)}
    assert launched and set(launched) <= planned, set(launched) - planned
    assert len({k[0] for k in launched}) == 9  # every TLAB and JCA kernel launched


def test_the_target_comes_from_the_environment_or_the_smallest_gpu(monkeypatch):
    monkeypatch.delenv(_plan.TARGET_ENV, raising=False)
    assert _plan.current_target() == _plan.Target(86, 101376)
    monkeypatch.setenv(_plan.TARGET_ENV, "sm_90")
    assert _plan.current_target().shared_memory == 232448
    monkeypatch.setenv(_plan.TARGET_ENV, "75")
    with pytest.raises(ValueError, match="AVER_FAST_TRITON_TARGET='75': unsupported Triton target sm_75"):
        _plan.current_target()


def test_a_real_compilation_for_a_named_target_and_the_failure_rules(monkeypatch):
    """One specialization through the gate's own path (a worker process, a fresh cache, ptxas for sm_86)."""
    monkeypatch.setattr(gpu_build, "plans_for", lambda *_: [mel_kernel.plan(1, 104, 128, torch.float32, 0)])
    (r,) = gpu_build.check((86,), workers=1, log=lambda _msg: None)
    assert not r.error and 0 < r.shared <= r.limit and r.registers > 0 and r.seconds > 0 and not r.problems
    too_big = gpu_build.Result("k", "s", 86, shared=120_000, limit=101376, spills=5000, seconds=70.0)
    assert [p.split()[0] for p in too_big.problems] == ["shared", "5000", "compiles"]
    bad = gpu_build.Result("k", "s", 86, error="does not compile: x")
    assert bad.problems == ["does not compile: x"]
    assert "| NO: " in gpu_build.markdown([too_big]) and "| yes |" in gpu_build.markdown([r])


def test_out_writes_the_worst_cases_and_every_specialization_as_csv(monkeypatch, tmp_path):
    """The results file holds a summary (worst case per kernel and arch), not the sweep's 1,275 rows; those go to
    gpu_build.csv beside it."""
    import csv

    from aver_fast.cli import main

    results = [gpu_build.Result("k", f"s{i}", 86, shared=1024 * (10 + i), limit=101376, registers=40 + i, spills=i,
                                seconds=0.5 * i) for i in range(3)]
    results.append(gpu_build.Result("k", "big", 90, shared=120_000, limit=232448, spills=5000, seconds=1.0))
    monkeypatch.setattr(gpu_build, "check", lambda *_args, **_kwargs: results)
    out = tmp_path / "RESULTS.md"
    assert main(["check-gpu-build", "--out", str(out)]) == 1  # one specialization fails (spills)
    text = out.read_text()
    assert "| k | sm_86 | 3 | 12 KB (12%) | 42 | 2 B | 1.0 s | none |" in text
    assert "| k | sm_90 | 1 | 117 KB (52%) | 0 | 5000 B | 1.0 s | 1 |" in text
    rows = list(csv.DictReader((tmp_path / "gpu_build.csv").open()))
    assert [r["specialization"] for r in rows] == ["big", "s0", "s1", "s2"]
    assert rows[0]["problems"].startswith("5000 bytes of spill stores") and rows[1]["shared_bytes"] == "10240"


def test_a_csv_it_did_not_write_is_never_replaced(monkeypatch, tmp_path):
    """--out's folder may hold the user's own gpu_build.csv (or a link there): refused before any compilation,
    left as it was."""
    from aver_fast.cli import main

    monkeypatch.setattr(gpu_build, "check", lambda *_args, **_kwargs: pytest.fail("compiled before the check"))
    theirs = tmp_path / "gpu_build.csv"
    theirs.write_text("my,own,table\n1,2,3\n")
    assert main(["check-gpu-build", "--out", str(tmp_path / "RESULTS.md")]) == 2
    assert theirs.read_text() == "my,own,table\n1,2,3\n" and not (tmp_path / "RESULTS.md").exists()
    victim = tmp_path / "elsewhere.csv"
    victim.write_text("keep\n")
    theirs.unlink()
    theirs.symlink_to(victim)
    assert main(["check-gpu-build", "--out", str(tmp_path / "RESULTS.md")]) == 2
    assert victim.read_text() == "keep\n"
