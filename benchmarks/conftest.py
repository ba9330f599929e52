"""`pytest benchmarks` ends with tables: per op, shape and mode, each fused backend's median with its spread
(interquartile range), its speed-up against the reference and against the best PyTorch-native alternative (named),
measured in the same run (aver_fast.bench.ratios), under a line naming the CPU, ISA and threads; and the rows the
end-to-end benchmarks report (``report_row``: predict's video seconds per second and real-time factor)."""
import pytest

from aver_fast.bench import FUSED, best_native, machine, ratios

_STATS: dict[tuple[str, str, str], dict[str, tuple[float, float, float]]] = {}
_ROWS: dict[str, list[dict]] = {}  # table title -> rows (column -> value), in the order measured


@pytest.fixture
def report_row():
    """``report_row(title, **columns)``: a row of the table ``title`` printed at the end of the run."""
    def record(title: str, **columns) -> None:
        _ROWS.setdefault(title, []).append(columns)
    return record


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
    for title, rows in _ROWS.items():
        terminalreporter.section(title)
        terminalreporter.write_line(f"Machine: {machine()}")
        columns = list(dict.fromkeys(k for r in rows for k in r))
        terminalreporter.write_line("| " + " | ".join(columns) + " |")
        terminalreporter.write_line("|" + "---|" * len(columns))
        for r in rows:
            terminalreporter.write_line("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
