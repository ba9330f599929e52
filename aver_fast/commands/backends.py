"""``aver-fast backends``: which backend each op would use, per device, as a table (``--json``: the full report of
:func:`aver_fast.backends`)."""
from __future__ import annotations

import argparse
import json

HELP = "print which backend each op would use, per device, and why the others would not"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print aver_fast.backends() as JSON (every reason in full)")


def table(report: dict) -> str:
    """One row per (op, device): the backend chosen automatically and, per backend, ``yes``, ``on request`` or a
    note number; the notes (why a backend cannot run, or runs only on request; how it computes) follow the table."""
    from ..ops._registry import BACKENDS

    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"no [{notes.index(text) + 1}]"

    rows = [("op", "device", "selected", *BACKENDS)]
    for op, devices in report.items():
        for dev, r in devices.items():
            cells = []
            for name in BACKENDS:
                why = r["reasons"].get(name)
                if why is not None:
                    cells.append(note(why))
                elif name in r["requested_only"]:
                    cells.append("on request " + note(r["requested_only"][name])[3:])
                else:
                    cells.append("yes")
            rows.append((op, dev, r["selected"], *cells))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + [f"[{i + 1}] {text}" for i, text in enumerate(notes)])


def run(args: argparse.Namespace) -> int:
    from ..ops import backends

    report = backends()
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0
