"""The benchmark harness (aver_fast/bench.py) and the closing table of `pytest benchmarks`."""
import os
import subprocess
import sys

import pytest

from aver_fast.bench import ratios

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ratios_against_reference_and_best_native():
    r = ratios({"reference": 4.0, "cpp": 1.0, "sdpa pair": 2.0, "compile(reference)": 8.0})
    assert r["cpp"] == (4.0, 2.0) and r["reference"] == (1.0, 0.5)
    assert ratios({"reference (stft+matmul)": 3.0, "cpp": 1.5})["cpp"] == (2.0, 2.0)


@pytest.mark.slow
def test_pytest_benchmarks_ends_with_the_speedup_table():
    res = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_ops_cpu.py", "-q", "-p", "no:cacheprovider",
                          "-k", "log_mel"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    tail = res.stdout.strip().splitlines()[-4:]
    assert tail[0] == "| op | shape | mode | backend | median | vs reference | vs best native |", tail
    assert tail[2].startswith("| log_mel | 16x45599 | fwd | cpp |") and tail[2].endswith("× |"), tail
