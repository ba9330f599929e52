"""Ahead-of-time compilation of every Triton kernel specialization the dispatcher can launch, for real GPU targets,
on a machine without a GPU (``aver-fast check-gpu-build``).

The sweep below is turned into launch plans by the same planning functions the launchers use
(``aver_fast.kernels.*.plans``/``plan``, with the target's shared memory), deduplicated, and each distinct
specialization is compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` in a fresh
Triton cache. A specialization fails the gate when its shared memory exceeds the target's per-block limit, when
ptxas reports more than :data:`MAX_SPILL_BYTES` of spill stores, or when it takes more than :data:`MAX_COMPILE_S`
seconds to compile.

Sweep (``full``): TLAB attention fp32/fp16/bf16, L in :data:`TLAB_L` (both sides of every path and tile switch, up to
4096), D in :data:`TLAB_D` (up to 256 on the flash path, 512 on the fused short path), 1 and 64 problems; JCA
fp32/fp16/bf16 over :data:`JCA_BUILD_SHAPES`; log_mel fp32/fp16/bf16 waveforms, n_mels in :data:`MEL_BANDS` (up to
512), every padding mode. ``quick`` keeps, per kernel, dtypes and padding mode, the specialization with the largest
tiles: every kernel and every target, in a few minutes.
"""
from __future__ import annotations

import concurrent.futures
import csv
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass

import torch

from .kernels import _plan  # no triton import: the plans' module needs only torch

ARCHS = tuple(sorted(_plan.SHARED_MEMORY))  # every target the plans know
MAX_COMPILE_S = 60.0  # on the 2-core CI machine
MAX_SPILL_BYTES = 4096  # spill stores per thread reported by ptxas: beyond this a kernel is badly planned
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TLAB_L = (1, 8, 16, 17, 32, 33, 64, 65, 128, 200, 1024, 4096)
TLAB_D = (16, 32, 64, 100, 128, 256, 512)
JCA_BUILD_SHAPES = ((16, 16, 512, 1024), (1, 1, 8, 8), (8, 100, 48, 40), (4, 33, 512, 64))  # (batch, L, C, D)
MEL_BANDS = (16, 64, 128, 200, 256, 257, 512)
MEL_FRAMES = (1, 20, 104, 1000)


@dataclass
class Result:
    kernel: str
    spec: str
    arch: int
    shared: int = 0
    limit: int = 0
    registers: int = 0
    spills: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def problems(self) -> list[str]:
        out = [self.error] if self.error else []
        if self.shared > self.limit:
            out.append(f"shared memory {self.shared / 1024:.0f} KB > {self.limit / 1024:.0f} KB")
        if self.spills > MAX_SPILL_BYTES:
            out.append(f"{self.spills} bytes of spill stores > {MAX_SPILL_BYTES}")
        if self.seconds > MAX_COMPILE_S:
            out.append(f"compiles in {self.seconds:.0f} s > {MAX_COMPILE_S:.0f} s")
        return out


def _dtypes(plan) -> str:
    return "/".join(sorted({str(v).removeprefix("torch.") for v in plan.pointers.values()}))


def _describe(plan) -> str:
    consts = ",".join(f"{k}={v}" for k, v in sorted(plan.constexprs.items()))
    return f"{_dtypes(plan)} {consts} warps={plan.num_warps} stages={plan.num_stages}"


def plans_for(arch: int, quick: bool = False) -> list:
    """The distinct launch plans of the sweep for ``arch`` (the launchers' own planning functions)."""
    from .kernels import jca_correlation as jca
    from .kernels import log_mel as mel
    from .kernels import tlab_attention as tlab

    target = _plan.target_for(arch)
    found: dict = {}
    for dtype in DTYPES:
        for L in TLAB_L:
            for D in TLAB_D:
                short = tlab.use_short_path(L, dtype)
                if D > tlab.LONG_MAX_D and not short:
                    continue  # refused by the op layer (the reference runs)
                for n in (1, 64):
                    for p in tlab.plans(n, L, D, dtype, target):
                        found.setdefault(p.key(), p)
        for b, L, c, d in JCA_BUILD_SHAPES:
            for p in jca.plans(2, b, L, L, c, d, dtype).values():
                found.setdefault(p.key(), p)
        for n_mels in MEL_BANDS:
            for frames in MEL_FRAMES:
                for pad_mode in range(4):
                    p = mel.plan(1, frames, n_mels, dtype, pad_mode)
                    found.setdefault(p.key(), p)
    plans = list(found.values())
    if quick:
        plans = _largest(plans)
    return plans


def _largest(plans: list) -> list:
    """Per (kernel, dtypes, log_mel padding mode): the plan with the largest product of tile sizes (the most shared
    memory and registers)."""
    def size(p) -> int:
        out = 1
        for k, v in p.constexprs.items():
            if k.startswith("BLOCK_"):
                out *= v
        return out
    groups: dict = {}
    for p in plans:
        key = (p.kernel.__name__, _dtypes(p), p.constexprs.get("PAD_MODE"))
        groups.setdefault(key, []).append(p)
    out = []
    for group in groups.values():
        top = max(size(p) for p in group)
        out.append(next(p for p in group if size(p) == top))
    return out


def _ptxas(cc: int) -> str:
    """The ptxas Triton itself uses for compute capability ``cc`` (Triton 3.9 takes its newer one from sm_90 up,
    3.8 from sm_100; both ship with Triton)."""
    from triton import knobs

    try:
        from triton.backends.nvidia.compiler import get_ptxas
    except ImportError:  # an older layout: the one tool
        return knobs.nvidia.ptxas.path
    return get_ptxas(cc).path


def _ptxas_spills(ptx: str, workdir: str, cc: int) -> tuple[int, int]:
    """(registers, spill store bytes) of the kernel, from ``ptxas -v`` of its PTX."""
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    path = os.path.join(workdir, "kernel.ptx")
    with open(path, "w") as f:
        f.write(ptx)
    res = subprocess.run([_ptxas(cc), "-v", f"--gpu-name={arch}", path, "-o", path + ".cubin"],
                         capture_output=True, text=True, check=True)
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = re.search(r"(\d+) bytes spill stores", res.stderr)
    return int(regs.group(1)) if regs else 0, int(spills.group(1)) if spills else 0


@dataclass(frozen=True)
class _Job:
    """One compilation, picklable for the worker processes (which import the kernel by name)."""

    arch: int
    module: str
    kernel: str
    spec: str
    signature: dict
    constexprs: dict
    num_warps: int
    num_stages: int


def _job(arch: int, plan) -> _Job:
    return _Job(arch, plan.kernel.fn.__module__, plan.kernel.__name__, _describe(plan), plan.signature(),
                dict(plan.constexprs), plan.num_warps, plan.num_stages)


def _compile(job: _Job) -> Result:
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = getattr(importlib.import_module(job.module), job.kernel)
    result = Result(job.kernel, job.spec, job.arch, limit=_plan.SHARED_MEMORY[job.arch])
    with tempfile.TemporaryDirectory() as work:
        os.environ["TRITON_CACHE_DIR"] = os.path.join(work, "cache")  # a fresh cache: real compile times
        start = time.perf_counter()
        try:
            src = ASTSource(fn=kernel, signature=job.signature, constexprs=job.constexprs)
            compiled = triton.compile(src, target=GPUTarget("cuda", job.arch, 32),
                                      options={"num_warps": job.num_warps, "num_stages": job.num_stages})
            result.seconds = time.perf_counter() - start
            result.shared = compiled.metadata.shared
            result.registers, result.spills = _ptxas_spills(compiled.asm["ptx"], work, job.arch)
        except Exception as e:  # a kernel that does not compile for this target fails the gate, named
            result.seconds = time.perf_counter() - start
            last = (str(e).strip().splitlines() or [repr(e)])[-1]
            result.error = f"does not compile: {type(e).__name__}: {last[:200]}"
    return result


def check(archs: tuple[int, ...] = ARCHS, quick: bool = False, workers: int | None = None,
          log=print) -> list[Result]:
    """Compile every planned specialization for every arch in ``archs``; returns one :class:`Result` each."""
    for arch in archs:
        _plan.target_for(arch)  # unknown archs fail before any work
    jobs = [_job(arch, p) for arch in archs for p in plans_for(arch, quick)]
    log(f"compiling {len(jobs)} kernel specializations for sm_{', sm_'.join(map(str, archs))}")
    results = []
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    ctx = multiprocessing.get_context("spawn")
    # the workers compile for real even when this process runs the kernels in Triton's interpreter: they start
    # without TRITON_INTERPRET (Triton reads it when it is first imported)
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for r in pool.map(_compile, jobs):
                results.append(r)
                if r.problems:
                    log(f"FAIL sm_{r.arch} {r.kernel} [{r.spec}]: {'; '.join(r.problems)}")
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret
    return results


def markdown(results: list[Result]) -> str:
    rows = ["| kernel | specialization | arch | shared memory | limit | registers | spill stores | compile | ok |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r.kernel, r.spec, r.arch)):
        rows.append(f"| {r.kernel} | {r.spec} | sm_{r.arch} | {r.shared / 1024:.0f} KB | {r.limit / 1024:.0f} KB | "
                    f"{r.registers} | {r.spills} B | {r.seconds:.1f} s | "
                    f"{'yes' if not r.problems else 'NO: ' + '; '.join(r.problems)} |")
    return "\n".join(rows) + "\n"


CSV_FIELDS = ("kernel", "specialization", "arch", "shared_bytes", "limit_bytes", "registers", "spill_bytes",
              "compile_s", "problems")


def check_csv_ours(path: str) -> None:
    """Refuse a ``path`` this gate did not write (a file without its header, a link, a folder): it is never
    replaced."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isfile(path)):
        raise ValueError(f"{path} is a link or a folder where check-gpu-build writes its table; move it away")
    if os.path.isfile(path):
        with open(path, newline="") as f:
            first = f.readline(4096).rstrip("\r\n")
        if first != ",".join(CSV_FIELDS):
            raise ValueError(f"{path} exists and was not written by check-gpu-build; move it away or write --out "
                             "elsewhere")


def write_csv(results: list[Result], path: str) -> None:
    """Every specialization, one row each (``CSV_FIELDS``), sorted by kernel, specialization and arch; an existing
    ``path`` is replaced only if this gate wrote it (:func:`check_csv_ours`)."""
    check_csv_ours(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in sorted(results, key=lambda r: (r.kernel, r.spec, r.arch)):
            w.writerow([r.kernel, r.spec, r.arch, r.shared, r.limit, r.registers, r.spills, f"{r.seconds:.2f}",
                        "; ".join(r.problems)])
    os.replace(tmp, path)


def summary(results: list[Result]) -> str:
    """Per kernel and arch, the worst case of each limit: specializations, largest shared memory (and its share of
    the arch's limit), most registers, most spill stores, slowest compilation, failures."""
    rows = ["| kernel | arch | specializations | shared memory (worst, % of limit) | registers | spill stores | "
            "compile | failing |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.kernel, r.arch), []).append(r)
    for (kernel, arch), rs in sorted(groups.items()):
        worst = max(rs, key=lambda r: r.shared / max(r.limit, 1))
        failing = sum(bool(r.problems) for r in rs)
        rows.append(f"| {kernel} | sm_{arch} | {len(rs)} | {worst.shared / 1024:.0f} KB "
                    f"({100 * worst.shared / max(worst.limit, 1):.0f}%) | {max(r.registers for r in rs)} | "
                    f"{max(r.spills for r in rs)} B | {max(r.seconds for r in rs):.1f} s | {failing or 'none'} |")
    return "\n".join(rows) + "\n"
