"""``aver-fast check-gpu-build``: compile every Triton kernel specialization the dispatcher can launch for real GPU
targets (no GPU needed) and fail when one does not fit (shared memory), spills, or compiles too slowly. Exit 0 when
every specialization passes, 1 when one fails."""
from __future__ import annotations

import argparse
import os

from ..gpu_build import ARCHS

HELP = f"compile every Triton kernel specialization for sm_{'/'.join(map(str, ARCHS))} without a GPU and check it fits"
DEFAULT_ARCHS = ",".join(map(str, ARCHS))
CSV_NAME = "gpu_build.csv"  # beside the --out markdown file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default=DEFAULT_ARCHS, help=f"comma-separated compute capabilities "
                                                         f"(default: {DEFAULT_ARCHS})")
    p.add_argument("--quick", action="store_true", help="the largest specialization of each kernel, dtype class and "
                                                        "padding mode only (CI)")
    p.add_argument("--jobs", type=int, help="parallel compilations (default: the CPU count)")
    p.add_argument("--out", help="also write the per-kernel, per-arch worst cases into this markdown file (its "
                                 "'gpu-build' section) and every specialization into gpu_build.csv beside it")


def run(args: argparse.Namespace) -> int:
    from ..bench import write_section
    from ..gpu_build import check, check_csv_ours, markdown, summary, write_csv

    try:
        archs = tuple(int(a.strip().removeprefix("sm_")) for a in args.arch.split(",") if a.strip())
    except ValueError:
        raise ValueError(f"--arch takes compute capabilities like 80,86,90, got {args.arch!r}") from None
    table_csv = os.path.join(os.path.dirname(args.out) or ".", CSV_NAME) if args.out else None
    if table_csv:
        check_csv_ours(table_csv)  # before the compilations
    results = check(archs, quick=args.quick, workers=args.jobs)
    table = markdown(results)
    print(table)
    failed = [r for r in results if r.problems]
    print(f"{len(results) - len(failed)} of {len(results)} specializations pass "
          f"({'quick' if args.quick else 'full'} sweep)")
    if table_csv:
        write_csv(results, table_csv)
        write_section(args.out, "## GPU build: ahead-of-time compilation (`aver-fast check-gpu-build"
                      + (" --quick" if args.quick else "") + "`)\n\nWorst case per kernel and arch; every "
                      f"specialization in `{CSV_NAME}`.\n\n" + summary(results), section="gpu-build")
    return 1 if failed else 0
