"""The benchmark harness (aver_fast/bench.py) and the closing table of `pytest benchmarks`."""
import os
import subprocess
import sys
import time

import pytest

from aver_fast.bench import best_native, machine, ratios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ratios_against_reference_and_best_native():
    r = ratios({"reference": 4.0, "cpp": 1.0, "sdpa pair": 2.0, "compile(reference)": 8.0})
    assert r["cpp"] == (4.0, 2.0) and r["reference"] == (1.0, 0.5)
    assert ratios({"reference (stft+matmul)": 3.0, "cpp": 1.5})["cpp"] == (2.0, 2.0)
    assert best_native({"reference": 4.0, "cpp": 1.0, "sdpa pair": 2.0, "compile(reference)": 8.0}) == "sdpa pair"


def test_machine_line_names_isa_threads_and_caps(monkeypatch):
    import torch

    from aver_fast.ops import _ext
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    for other in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(other, raising=False)
    line = machine()
    assert f"C++ kernels {_ext.cpu_isa()}" in line and f"{torch.get_num_threads()} threads" in line
    assert "PyTorch capped: ONEDNN_MAX_CPU_ISA=AVX2" in line and "native bfloat16 no" in line


@pytest.mark.slow
def test_pytest_benchmarks_ends_with_the_speedup_table():
    res = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_ops_cpu.py", "-q", "-p", "no:cacheprovider",
                          "-k", "log_mel"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    tail = res.stdout.strip().splitlines()[-6:]
    assert tail[0].startswith("Machine: ") and " threads, torch " in tail[0], tail
    assert tail[2] == "| op | shape | mode | backend | median (IQR) | vs reference | vs best native (which) |", tail
    assert tail[4].startswith("| log_mel | 16x45599 | fwd | cpp |"), tail
    assert tail[4].endswith("(reference (stft+matmul)) |"), tail


def test_tlab_phases_harness_builds_and_runs(tmp_path):
    """benchmarks/tlab_phases.cpp times the kernel headers themselves: it must keep compiling as they change."""
    import shutil

    cxx = shutil.which("g++") or shutil.which("c++")
    assert cxx, "no C++ compiler (the extension's build needs one too)"
    from aver_fast.cpu import flags

    exe = str(tmp_path / "phases")
    isa = ["-mavx2", "-mfma", "-DAVER_VEC_BYTES=32"] if {"avx2", "fma"} <= flags() else ["-DAVER_VEC_BYTES=16"]
    build = subprocess.run([cxx, "-O1", "-std=c++17", *isa, "-Icsrc", "benchmarks/tlab_phases.cpp", "-o", exe],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    for L, D in ((4, 8), (9, 5)):  # both associations
        run = subprocess.run([exe, str(L), str(D), "2"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "forward (all of the above)" in run.stdout and "backward" in run.stdout, run.stdout


def test_measure_together_interleaves_the_functions():
    """Each function is timed in every round, in turns, so a burst of load cannot land on one of them only."""
    from aver_fast.bench import measure_together

    calls: list[str] = []
    slow = lambda: (calls.append("slow"), time.sleep(0.002))  # noqa: E731
    fast = lambda: calls.append("fast")  # noqa: E731
    timings = measure_together({"slow": slow, "fast": fast}, min_time=0.04, rounds=4, warmup=1)
    assert calls[:2] == ["slow", "fast"]  # the warm-up
    turns = [name for i, name in enumerate(calls[2:]) if i == 0 or calls[2:][i - 1] != name]
    assert turns == ["slow", "fast"] * 4
    assert timings["slow"].lo >= 0.002 > timings["fast"].median
    assert timings["slow"].lo <= timings["slow"].median <= timings["slow"].hi
