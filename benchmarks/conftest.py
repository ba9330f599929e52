"""`pytest benchmarks` ends with one table: per op, shape and mode, each fused backend's speed-up against the
reference and against the best PyTorch-native alternative, measured in the same run (aver_fast.bench.ratios)."""
import pytest

from aver_fast.bench import FUSED, ratios

_MEDIANS: dict[tuple[str, str, str], dict[str, float]] = {}


@pytest.fixture
def record_median():
    """``record_median((op, shape, mode), impl, seconds)``: keep a timed median for the closing table."""
    def record(key: tuple[str, str, str], impl: str, median: float) -> None:
        _MEDIANS.setdefault(key, {})[impl] = median
    return record


def summary_rows(medians: dict[tuple[str, str, str], dict[str, float]]) -> list[str]:
    rows = ["| op | shape | mode | backend | median | vs reference | vs best native |", "|---|---|---|---|---|---|---|"]
    for (op, shape, mode), times in medians.items():
        if not any(n.startswith("reference") for n in times):
            continue
        speedup = ratios(times)
        rows += [f"| {op} | {shape} | {mode} | {name} | {times[name] * 1e6:,.0f} µs | {speedup[name][0]:.2f}× | "
                 f"{speedup[name][1]:.2f}× |" for name in times if name in FUSED]
    return rows


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables: the run ends with this one
def pytest_terminal_summary(terminalreporter):
    if _MEDIANS:
        terminalreporter.section("aver_fast speed-ups (this run)")
        for row in summary_rows(_MEDIANS):
            terminalreporter.write_line(row)
