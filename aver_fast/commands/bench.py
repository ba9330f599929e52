"""``aver-fast bench``."""
from __future__ import annotations

import argparse

HELP = "time every op on CPU (reference vs C++ vs PyTorch-native) and write the markdown table into RESULTS.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="benchmarks/RESULTS.md",
                   help="markdown file to write; an existing file keeps everything outside its CPU section "
                        "(default: benchmarks/RESULTS.md)")
    p.add_argument("--section", default=None,
                   help="name of the block to (re)write (default: cpu-<ISA of the C++ kernels>, so the AVX2 and "
                        "AVX-512 builds keep a table each; AVER_FAST_CPU_ISA=avx2 measures the AVX2 build)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the references (slow to build)")


def run(args: argparse.Namespace) -> int:
    from ..bench import run_all, write_section
    from ..ops import _ext

    write_section(args.out, run_all(compile_ref=not args.no_compile), args.section or f"cpu-{_ext.cpu_isa()}")
    print(f"wrote {args.out}")
    return 0
