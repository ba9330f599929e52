"""The benchmark harness: one list of cases (:func:`cases`, parametrised by device, dtype and size) and one timing
helper (:func:`timer`, parametrised by device), shared by ``aver-fast bench``, ``pytest benchmarks`` and
``benchmarks/gpu_suite.py``.

Every case times, in one process: the reference, the compiled C++ kernel and the best PyTorch-native alternative
(two ``scaled_dot_product_attention`` calls for TLAB; ``torch.compile`` of the reference where it helps), their
runs interleaved (:func:`measure_together`). Times are medians (with min and max) of repeated calls after warm-up;
GFLOP/s count the useful flops of the op (6·L²·D per TLAB problem: three L×L×D products) and are set against the
machine's measured large-matmul peak.
"""
from __future__ import annotations

import datetime
import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .ops import _ext
from .ops.jca_correlation import jca_correlation, jca_correlation_pair, jca_correlation_ref
from .ops.log_mel import log_mel, log_mel_ref, mel_filterbank
from .ops.tlab_attention import tlab_attention, tlab_attention_ref


@dataclass
class Timing:
    median: float
    lo: float
    hi: float


def measure(fn: Callable[[], object], min_time: float = 0.3, warmup: int = 3, max_runs: int = 2000) -> Timing:
    """Median/min/max seconds of ``fn()`` over as many runs as fit in ``min_time`` (at least 5)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < max_runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return Timing(statistics.median(times), min(times), max(times))


def measure_together(fns: dict[str, Callable[[], object]], min_time: float = 0.3, rounds: int = 10,
                     warmup: int = 3) -> dict[str, Timing]:
    """:func:`measure` of each of ``fns`` with their runs interleaved: ``rounds`` turns, each giving every function
    ``min_time / rounds`` seconds, so a burst of load on a shared machine slows all of them, not the one that
    happened to be timed then (the ratios between them are what a benchmark reports)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            while len(times[name]) < 1 or time.perf_counter() - start < min_time / rounds:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: Timing(statistics.median(ts), min(ts), max(ts)) for name, ts in times.items()}


def timer(device: str, quick: bool = False) -> Callable[[Callable[[], object]], float]:
    """The timing helper of every benchmark: median seconds of ``fn()``. On a GPU, CUDA-event timings after
    warm-up (``triton.testing.do_bench``, which also flushes the L2 cache); on CPU, wall-clock :func:`measure`
    (``quick``: a handful of runs, for smoke tests)."""
    if device == "cuda":
        import triton.testing

        return lambda fn: triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
    if quick:
        return lambda fn: measure(fn, min_time=0.05, warmup=1, max_runs=5).median
    return lambda fn: measure(fn).median


def matmul_peak_gflops(n: int = 2048) -> float:
    """Measured float32 GFLOP/s of one large matmul on this machine (all threads torch uses)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = measure(lambda: a @ b, min_time=1.0)
    return 2 * n ** 3 / t.median / 1e9


FUSED = ("cpp", "triton")  # implementations that are this library's backends; every other one is PyTorch-native


def best_native(medians: dict[str, float]) -> str:
    """The fastest PyTorch-native implementation (the reference included) among ``medians``."""
    return min((n for n in medians if n not in FUSED and not n.startswith(FUSED)), key=medians.__getitem__)


def ratios(medians: dict[str, float]) -> dict[str, tuple[float, float]]:
    """``{implementation: (speed-up vs the reference, vs the best PyTorch-native one)}`` from median times."""
    ref = next(t for n, t in medians.items() if n.startswith("reference"))
    native = medians[best_native(medians)]
    return {n: (ref / t, native / t) for n, t in medians.items()}


def compiled(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``torch.compile(fn)``, compiling in this process: worker processes would compete with the timed code for
    the cores (this sets inductor's compile_threads, only when a benchmark compiles something)."""
    import torch._inductor.config

    from .cpu import separate_compile_cache

    separate_compile_cache()  # benchmarks run capped at AVX2 too
    torch._inductor.config.compile_threads = 1
    return torch.compile(fn, dynamic=False)


@dataclass
class Case:
    """One benchmark: an op at one shape and dtype, in one mode, with the implementations to compare. ``flops``
    counts the op's useful work and ``nbytes`` its minimal traffic (inputs read once, output written once)."""

    op: str
    shape: str
    mode: str  # "fwd" or "fwd+bwd"
    flops: float
    nbytes: float = 0.0
    dtype: torch.dtype = torch.float32
    impls: dict[str, Callable[[], object]] = field(default_factory=dict)


# the shapes of each op per size: "paper" (CPU; with one lone long problem, which the C++ kernel splits across
# threads), "gpu" (adds a long sequence), "smoke" (tiny, for dry runs)
TLAB_SHAPES = {"paper": ((16, 2, 16, 256), (64, 2, 128, 64), (1, 1, 256, 128)),
               "gpu": ((16, 2, 16, 256), (64, 2, 128, 64), (8, 2, 1024, 64)),
               "smoke": ((2, 2, 16, 32), (1, 1, 40, 16))}
JCA_SHAPES = {"paper": ((16, 16, 512, 1024),), "gpu": ((16, 16, 512, 1024),), "smoke": ((2, 16, 32, 48),)}
MEL_SHAPES = {"paper": ((16, 45599),), "gpu": ((16, 45599),), "smoke": ((1, 1500),)}


def _fwd_bwd(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> Callable[[], None]:
    grad = None

    def run() -> None:
        nonlocal grad
        for t in inputs:
            t.grad = None
        out = fn(*inputs)
        if grad is None:
            grad = torch.randn_like(out)
        out.backward(grad)
    return run


def _sdpa_pair(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, F.scaled_dot_product_attention(k, q, v))


def _fwd_and_bwd_cases(op: str, name: str, flops: float, nbytes: float, inputs: list[torch.Tensor],
                       impls: dict[str, Callable[..., torch.Tensor]], fwd_only: dict) -> list[Case]:
    """A forward case and a forward+backward case (3x the flops, 2x the bytes) comparing ``impls`` on the same
    inputs; ``fwd_only`` implementations (compiled references, multi-output variants) time the forward only."""
    dtype = inputs[0].dtype
    fwd = Case(op, name, "fwd", flops, nbytes, dtype,
               {n: functools.partial(f, *inputs) for n, f in (impls | fwd_only).items()})
    leaves = [t.clone().requires_grad_() for t in inputs]
    bwd = Case(op, name, "fwd+bwd", 3 * flops, 2 * nbytes, dtype, {n: _fwd_bwd(f, leaves) for n, f in impls.items()})
    return [fwd, bwd]


def tlab_cases(device: str = "cpu", dtype: torch.dtype = torch.float32, size: str = "paper", backend: str = "cpp",
               compile_ref: bool = True) -> list[Case]:
    """The paper's training shape and longer sequences; flops count the three L x L x D products."""
    impls = {"reference": tlab_attention_ref, backend: functools.partial(tlab_attention, backend=backend),
             "sdpa pair": _sdpa_pair}
    fwd_only = {"compile(reference)": compiled(tlab_attention_ref)} if compile_ref else {}
    out = []
    for b, h, L, d in TLAB_SHAPES[size]:
        inputs = [torch.randn(b, h, L, d, device=device, dtype=dtype) for _ in range(3)]
        nbytes = 4 * inputs[0].numel() * inputs[0].element_size()
        out += _fwd_and_bwd_cases("tlab_attention", f"B{b}-H{h}-L{L}-D{d}", 6 * L * L * d * b * h, nbytes, inputs,
                                  impls, fwd_only)
    return out


def jca_cases(device: str = "cpu", dtype: torch.dtype = torch.float32, size: str = "paper", backend: str = "cpp",
              compile_ref: bool = True) -> list[Case]:
    """The paper's JCA shape (batch 16, L 16, one modality's 512 channels against the 1024-d joint features)."""
    impls = {"reference": jca_correlation_ref, backend: functools.partial(jca_correlation, backend=backend)}
    fwd_only = {"compile(reference)": compiled(jca_correlation_ref)} if compile_ref else {}
    if backend == "triton":  # both modalities in one launch, as the JCA layer calls it
        fwd_only[f"{backend}, both modalities in one launch"] = lambda x, w, j: jca_correlation_pair(
            x, w, x, w, j, backend=backend)
    out = []
    for b, L, ch, d in JCA_SHAPES[size]:
        inputs = [torch.randn(b, L, ch, device=device, dtype=dtype),
                  torch.randn(ch, d, device=device, dtype=dtype) / ch ** 0.5, torch.randn(b, L, d, device=device,
                                                                                          dtype=dtype)]
        nbytes = (sum(t.numel() for t in inputs) + b * L * L) * inputs[0].element_size()
        out += _fwd_and_bwd_cases("jca_correlation", f"B{b}-L{L}-C{ch}-D{d}", 2 * b * L * ch * d + 2 * b * L * L * d,
                                  nbytes, inputs, impls, fwd_only)
    return out


def mel_cases(device: str = "cpu", size: str = "paper", backend: str = "cpp") -> list[Case]:
    """Clips of 1.03 s at 44.1 kHz with the paper's settings (float32). The reference is torch.stft + filterbank
    matmul.

    Useful flops per frame: a real FFT (2.5 N log2 N), the power (3 per bin) and the mel projection over the
    filterbank's non-zeros (2 per non-zero; the dense matmul of the reference does ~50x more)."""
    n_fft = 1024
    n_freqs = 513
    n_mels = 128
    hop = 441
    nnz = int((mel_filterbank(44100, n_fft, n_mels, 0.0, 22050.0, "slaney", "slaney") != 0).sum())
    out = []
    for clips, samples in MEL_SHAPES[size]:
        x = torch.randn(clips, samples, device=device)
        frames = 1 + samples // hop
        flops = clips * frames * (2.5 * n_fft * math.log2(n_fft) + 3 * n_freqs + 2 * nnz)
        out.append(Case("log_mel", f"{clips}x{samples}", "fwd", flops, (x.numel() + clips * n_mels * frames) * 4,
                        torch.float32, {"reference (stft+matmul)": functools.partial(log_mel_ref, x),
                                        backend: functools.partial(log_mel, x, backend=backend)}))
    return out


def cases(device: str = "cpu", dtype: torch.dtype = torch.float32, size: str = "paper", backend: str = "cpp",
          compile_ref: bool = True) -> list[Case]:
    """Every op's cases: the one list that ``aver-fast bench``, ``pytest benchmarks`` and
    ``benchmarks/gpu_suite.py`` time (log_mel in float32 only)."""
    out = tlab_cases(device, dtype, size, backend, compile_ref) + jca_cases(device, dtype, size, backend, compile_ref)
    return out + (mel_cases(device, size, backend) if dtype == torch.float32 else [])


def saved_bytes(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward in one forward call of ``fn`` (inputs excluded)."""
    total = 0
    ids = {id(t) for t in inputs}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if id(t) not in ids and t.data_ptr() not in {i.data_ptr() for i in inputs}:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return total


def fusion_breakdown(backend: str, repeats: int = 50) -> tuple[Timing, float]:
    """AVER ``paper()`` fusion forward at batch 1 on cached features; returns its timing and the share of it spent
    inside the three ops (reported by the registry's :func:`~aver_fast.ops._registry.observe`)."""
    from .models import AVER, AVERConfig
    from .ops import _registry

    model = AVER(AVERConfig.paper()).eval()
    v, a = torch.randn(1, 16, 49, 512), torch.randn(1, 16, 512)
    spent = [0.0]

    def record(_op: str, _backend: str, seconds: float) -> None:
        spent[0] += seconds
    run = lambda: model.forward_features(v, a)  # noqa: E731
    with _registry.using_backend(backend), torch.no_grad(), _registry.observe(record):
        timing = measure(run, min_time=0.5)
        spent[0] = 0.0
        for _ in range(repeats):
            run()
        ops_time = spent[0] / repeats
    return timing, ops_time / timing.median


def jca_gemm_share(b: int = 16, L: int = 16, c: int = 512, d: int = 1024) -> tuple[float, float]:
    """How GEMM-bound ``jca_correlation`` is at the paper's shape: the share of the reference's forward spent in
    ``x @ w``, and of its forward+backward in the three (C x D) products (``x @ w``, ``dXW @ wᵀ``, ``xᵀ dXW``);
    fastest calls against fastest calls (noise only adds time)."""
    x, w, j = torch.randn(b * L, c), torch.randn(c, d) / c ** 0.5, torch.randn(b, L, d)
    dxw = torch.randn(b * L, d)
    gemm = measure(lambda: x @ w).lo
    gemms = measure(lambda: (x @ w, dxw @ w.t(), x.t() @ dxw)).lo
    fwd = measure(lambda: jca_correlation_ref(x.view(b, L, c), w, j)).lo
    leaves = [t.clone().requires_grad_() for t in (x.view(b, L, c), w, j)]
    fwd_bwd = measure(_fwd_bwd(jca_correlation_ref, leaves)).lo
    return gemm / fwd, gemms / fwd_bwd


def machine() -> str:
    """The CPU and what the numbers depend on: model, vector ISA of the C++ kernels (and of PyTorch's own kernels,
    which ``ATEN_CPU_CAPABILITY``/``ONEDNN_MAX_CPU_ISA`` may cap), native bfloat16, threads, torch."""
    from .cpu import has_native, model_name

    caps = ", ".join(f"{v}={os.environ[v]}" for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                       "MKL_ENABLE_INSTRUCTIONS") if os.environ.get(v))
    return (f"{model_name()}, C++ kernels {_ext.cpu_isa()}"
            f"{f' (PyTorch capped: {caps})' if caps else ''}, native bfloat16 {'yes' if has_native() else 'no'}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}")


def machine_header(peak: float) -> str:
    return (f"Machine: {machine()}; measured float32 matmul peak {peak:.0f} GFLOP/s; "
            f"{datetime.date.today().isoformat()}.")


def run_all(compile_ref: bool = True, log: Callable[[str], None] = print) -> str:
    """Run every case and return the markdown report (tables of medians, ratios, GFLOP/s and % of peak)."""
    if not _ext.LOADED:
        raise RuntimeError(_ext.REASON)
    all_cases = cases(compile_ref=compile_ref)
    for case in all_cases:  # compile and warm every implementation before timing anything
        for fn in case.impls.values():
            fn()
    peak = matmul_peak_gflops()
    lines = ["## CPU: ops", "", machine_header(peak), "",
             "| op | shape | mode | implementation | median (min–max) | vs reference | vs best native (which) "
             "| GFLOP/s | % of peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in all_cases:
        results = measure_together(case.impls)
        medians = {n: t.median for n, t in results.items()}
        speedup = ratios(medians)
        native = best_native(medians)
        for name, t in results.items():
            gflops = case.flops / t.median / 1e9
            lines.append(f"| {case.op} | {case.shape} | {case.mode} | {name} | {t.median * 1e6:,.0f} µs "
                         f"({t.lo * 1e6:,.0f}–{t.hi * 1e6:,.0f}) | {speedup[name][0]:.2f}× | "
                         f"{speedup[name][1]:.2f}× ({native}) | {gflops:.0f} | {100 * gflops / peak:.0f}% |")
            log(lines[-1])
    x = torch.randn(16, 16, 512, requires_grad=True)
    w = torch.randn(512, 1024, requires_grad=True)
    j = torch.randn(16, 16, 1024, requires_grad=True)
    mem_ref = saved_bytes(jca_correlation_ref, [x, w, j])
    mem_cpp = saved_bytes(lambda a, b, c: jca_correlation(a, b, c, backend="cpp"), [x, w, j])
    fwd_share, fwd_bwd_share = jca_gemm_share()
    lines += ["", f"jca_correlation (16, 16, 512 → 1024), activation memory saved for backward beyond the inputs: "
              f"reference {mem_ref / 1024:.0f} KiB, cpp {mem_cpp / 1024:.0f} KiB. Share of the reference's time in "
              f"its (C × D) GEMMs, which any implementation must run: forward {100 * fwd_share:.0f}%, "
              f"forward+backward {100 * fwd_bwd_share:.0f}% (so on CPU its automatic choice is the reference).",
              "", "## CPU: AVER `paper()` fusion forward, batch 1, cached features (1, 16, 49, 512) + (1, 16, 512)", "",
              "| backend | median (min–max) | share inside the three ops |", "|---|---|---|"]
    for backend in ("reference", "cpp"):
        t, share = fusion_breakdown(backend)
        lines.append(f"| {backend} | {t.median * 1e3:.2f} ms ({t.lo * 1e3:.2f}–{t.hi * 1e3:.2f}) | "
                     f"{100 * share:.0f}% |")
        log(lines[-1])
    return "\n".join(lines) + "\n"


def write_section(path: str, report: str, section: str = "cpu") -> None:
    """Write ``report`` between the ``section`` markers of ``path`` (created if missing), keeping the rest."""
    START, END = f"<!-- aver-fast bench: {section} start -->", f"<!-- aver-fast bench: {section} end -->"
    block = f"{START}\n{report}{END}\n"
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
