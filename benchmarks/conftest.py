"""`pytest benchmarks` ends with one table: per op, shape and mode, each fused backend's median with its spread
(interquartile range), its speed-up against the reference and against the best PyTorch-native alternative (named),
measured in the same run (aver_fast.bench.ratios), under a line naming the CPU, ISA and threads."""
import pytest

from aver_fast.bench import FUSED, best_native, machine, ratios

_STATS: dict[tuple[str, str, str], dict[str, tuple[float, float, float]]] = {}


@pytest.fixture
def record_median():
    """``record_median((op, shape, mode), impl, stats)``: keep pytest-benchmark's stats (median, first and third
    quartile) of one implementation for the closing table."""
    def record(key: tuple[str, str, str], impl: str, stats) -> None:
        _STATS.setdefault(key, {})[impl] = (stats.median, stats.q1, stats.q3)
    return record


def summary_rows(stats: dict[tuple[str, str, str], dict[str, tuple[float, float, float]]]) -> list[str]:
    rows = [f"Machine: {machine()}", "",
            "| op | shape | mode | backend | median (IQR) | vs reference | vs best native (which) |",
            "|---|---|---|---|---|---|---|"]
    for (op, shape, mode), times in stats.items():
        medians = {name: t[0] for name, t in times.items()}
        if not any(n.startswith("reference") for n in medians):
            continue
        speedup = ratios(medians)
        native = best_native(medians)
        rows += [f"| {op} | {shape} | {mode} | {name} | {t[0] * 1e6:,.0f} µs ({t[1] * 1e6:,.0f}–{t[2] * 1e6:,.0f}) | "
                 f"{speedup[name][0]:.2f}× | {speedup[name][1]:.2f}× ({native}) |"
                 for name, t in times.items() if name in FUSED]
    return rows


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables: the run ends with this one
def pytest_terminal_summary(terminalreporter):
    if _STATS:
        terminalreporter.section("aver_fast speed-ups (this run)")
        for row in summary_rows(_STATS):
            terminalreporter.write_line(row)
