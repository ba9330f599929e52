"""`pytest benchmarks`: every op on CPU, reference vs C++ vs the best PyTorch-native alternative, grouped per
(op, shape, mode) so pytest-benchmark prints the ratios between them in one run. Nothing is asserted about speed.
`aver-fast bench` runs the same cases (aver_fast/bench.py) and writes benchmarks/RESULTS.md."""
import pytest
import torch

from aver_fast import bench
from aver_fast.ops import _ext

CASES = bench.cases()
PARAMS = [pytest.param(case, impl, id=f"{case.op}-{case.shape}-{case.mode}-{impl}")
          for case in CASES for impl in case.impls]


@pytest.mark.parametrize("case, impl", PARAMS)
def test_op(benchmark, record_median, case, impl):
    assert _ext.LOADED, _ext.REASON
    benchmark.group = f"{case.op} {case.shape} {case.mode}"
    fn = case.impls[impl]
    fn()  # warm-up (and torch.compile's compilation) outside the timed rounds
    benchmark.pedantic(fn, rounds=30, iterations=3, warmup_rounds=2)
    record_median((case.op, case.shape, case.mode), impl, benchmark.stats.stats)
    benchmark.extra_info["GFLOP/s"] = round(case.flops / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_aver_paper_fusion_forward_batch1(benchmark, backend, monkeypatch):
    from aver_fast import AVER, AVERConfig
    monkeypatch.setenv("AVER_FAST_BACKEND", backend)
    benchmark.group = "AVER paper() fusion forward, batch 1, cached features"
    model = AVER(AVERConfig.paper()).eval()
    v, a = torch.randn(1, 16, 49, 512), torch.randn(1, 16, 512)
    with torch.no_grad():
        benchmark.pedantic(lambda: model.forward_features(v, a), rounds=30, iterations=2, warmup_rounds=3)
