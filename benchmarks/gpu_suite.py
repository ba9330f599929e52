"""One command for a GPU machine: parity of every GPU kernel, then timings and roofline of each op (also replayed
from a CUDA graph, without the launch overhead), where one TLAB call's host time goes, AVER inference per instance
at batch 1 and 8 and an AVER training step, each in float32 and under bf16 autocast, with cudnn.benchmark off and
on, the ahead-of-time compile gate for this GPU's arch and the backend choices the autotuner measured. Writes a
markdown section into benchmarks/RESULTS.md (GPU markers).

    python benchmarks/gpu_suite.py                 # on a GPU machine
    python benchmarks/gpu_suite.py --sanitizer     # also run the CUDA dispatch tests under compute-sanitizer
    TRITON_INTERPRET=1 python benchmarks/gpu_suite.py --smoke --out /tmp/x.md   # tiny CPU dry run (CI)

The cases and the timing helper are aver_fast.bench's (`aver-fast bench` times the same list on CPU): CUDA-event
medians after warm-up (triton.testing.do_bench); on the --smoke CPU run, medians of wall-clock calls. Each op is
compared with the reference, two scaled_dot_product_attention calls (TLAB), torch.compile of the reference, and
torch.stft + matmul (the log-mel reference). Roofline: the op's useful flops and its minimal bytes (inputs read once,
output written once) against the measured matmul peak and copy bandwidth; "of floor" is
max(flops/peak, bytes/bandwidth) / time.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("parity", "ops", "overhead", "inference", "training", "gate")


def peaks(device: str, dtype: torch.dtype, t) -> tuple[float, float]:
    """(matmul FLOP/s in ``dtype``, copy bytes/s) measured on this device."""
    n = 4096 if device == "cuda" else 256
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    flops = 2 * n ** 3 / t(lambda: a @ b)
    x = torch.empty(64 * 2 ** 20 if device == "cuda" else 2 ** 20, device=device, dtype=torch.uint8)
    y = torch.empty_like(x)
    bw = 2 * x.numel() / t(lambda: y.copy_(x))
    return flops, bw


def parity(device: str, sanitizer: bool) -> list[str]:
    rows = []
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels"]
    if device == "cuda" and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "8"]  # the tests' time is mostly Triton compiling on the CPU; they share the GPU
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout else res.stderr[-300:]
    rows.append(f"- `pytest tests/kernels` on {device}: {summary}")
    # pytest's -ra summary names each test that did not pass, with the first line of its error
    rows += [f"  - {line[:200]}" for line in res.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if sanitizer:
        tool = shutil.which("compute-sanitizer")
        if tool is None:
            rows.append("- compute-sanitizer: not installed on this machine")
        else:
            res = subprocess.run([tool, "--tool", "memcheck", sys.executable, "-m", "pytest", "-q",
                                  "tests/kernels"], cwd=ROOT, capture_output=True, text=True)
            tail = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
            rows.append(f"- compute-sanitizer memcheck on the Triton kernel tests: exit {res.returncode}, {tail}")
    return rows


def graph_time(fn, t) -> str:
    """GPU time of ``fn`` alone: ``fn`` captured once in a CUDA graph and the replay timed, so the Python and
    launch overhead that a call's time includes is left out; "—" where ``fn`` cannot be captured."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return f"{t(graph.replay) * 1e6:,.1f} µs"
    except Exception:  # noqa: BLE001 -- a call that syncs or allocates on the host is not capturable: say so
        torch.cuda.synchronize()
        return "—"


def op_rows(device: str, smoke: bool, t, peak_flops: dict, bw: float) -> list[str]:
    """Every case of aver_fast.bench (the list `aver-fast bench` times on CPU) with the Triton backend; on a GPU
    also each implementation's time replayed from a CUDA graph (without the Python and launch overhead)."""
    from aver_fast import bench

    rows = ["| op | shape | dtype | mode | implementation | time | GPU time (CUDA graph) | vs reference | "
            "vs best native | TFLOP/s | GB/s | of floor |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    size = "smoke" if smoke else "gpu"
    for dtype in [torch.float32] if smoke else [torch.float32, torch.bfloat16]:
        # the smoke run skips torch.compile (minutes of compilation on 2 CPU cores)
        for case in bench.cases(device, dtype, size, backend="triton", compile_ref=not smoke):
            times = {}
            dname = str(case.dtype).replace("torch.", "")
            head = f"| {case.op} | {case.shape} | {dname} | {case.mode} |"
            for name, fn in case.impls.items():
                try:
                    times[name] = t(fn)
                except Exception as e:  # report, do not hide, an implementation that fails here
                    rows.append(f"{head} {name} | failed: {type(e).__name__}: {str(e)[:80]} | | | | | | |")
            if not any(n.startswith("reference") for n in times):
                continue
            floor = max(case.flops / peak_flops[case.dtype], case.nbytes / bw)
            for name, (vs_ref, vs_native) in bench.ratios(times).items():
                sec = times[name]
                graph = graph_time(case.impls[name], t) if device == "cuda" else "—"
                rows.append(f"{head} {name} | {sec * 1e6:,.1f} µs | {graph} | {vs_ref:.2f}× | {vs_native:.2f}× | "
                            f"{case.flops / sec / 1e12:.2f} | {case.nbytes / sec / 1e9:.0f} | "
                            f"{100 * floor / sec:.0f}% |")
    return rows


def overhead_rows(device: str, smoke: bool, t) -> list[str]:
    """Where one forward TLAB call's time goes: the public op (checks, backend choice), its custom op (dispatch),
    the kernel launcher alone (plans, allocations, Triton's launch), and on a GPU the kernels alone (CUDA graph)."""
    from aver_fast import tlab_attention
    from aver_fast.kernels import tlab_attention as kernel

    rows = ["| shape | dtype | what is called | time per call |", "|---|---|---|---|"]
    b, h, L, D = (2, 2, 16, 32) if smoke else (64, 2, 128, 64)
    for dtype in [torch.float32] if smoke else [torch.float32, torch.bfloat16]:
        q, k, v = (torch.randn(b, h, L, D, device=device, dtype=dtype) for _ in range(3))
        flat, s = [x.reshape(-1, L, D) for x in (q, k, v)], D ** -0.5
        calls = {"`aver_fast.tlab_attention`, automatic choice": lambda: tlab_attention(q, k, v),
                 "`aver_fast.tlab_attention(backend='sdpa')`": lambda: tlab_attention(q, k, v, backend="sdpa"),
                 "`aver_fast.tlab_attention(backend='triton')`": lambda: tlab_attention(q, k, v, backend="triton"),
                 "`torch.ops.aver_fast.tlab_attention_triton`": lambda: torch.ops.aver_fast.tlab_attention_triton(
                     *flat, s),
                 "`kernels.tlab_attention.forward` (the launcher)": lambda: kernel.forward(*flat, s)}
        head = f"| B{b}-H{h}-L{L}-D{D} | {str(dtype).removeprefix('torch.')} |"
        with torch.no_grad():
            rows += [f"{head} {name} | {t(fn) * 1e6:,.1f} µs |" for name, fn in calls.items()]
            if device == "cuda":
                launcher = calls["`kernels.tlab_attention.forward` (the launcher)"]
                rows.append(f"{head} the launcher's kernels alone (CUDA graph) | {graph_time(launcher, t)} |")
    return rows


def aver_rows(device: str, smoke: bool, t) -> list[str]:
    from aver_fast import AVER, AVERConfig

    cfg = AVERConfig.tiny() if smoke else AVERConfig.paper()
    model = AVER(cfg).to(device).eval()
    video = torch.randn(1, cfg.seq_len, 3, cfg.frames_per_clip, cfg.image_size, cfg.image_size, device=device)
    audio = torch.randn(1, cfg.seq_len, 1, cfg.n_mels, cfg.audio_frames, device=device)
    rows = ["| AVER preset | batch | precision | cudnn.benchmark | backbones + fusion, per instance | "
            "fusion on cached features, per instance |", "|---|---|---|---|---|---|"]
    name = "tiny" if smoke else "paper"
    for batch in [1] if smoke else [1, 8]:
        v, a_in = video.repeat(batch, *[1] * (video.dim() - 1)), audio.repeat(batch, *[1] * (audio.dim() - 1))
        for prec in (["float32"] if smoke else ["float32", "bfloat16 autocast"]):
            for benchmark in [False] if smoke else [False, True]:
                torch.backends.cudnn.benchmark = benchmark
                ctx = (torch.autocast(device, dtype=torch.bfloat16) if prec != "float32" else torch.no_grad())
                with torch.no_grad(), ctx:
                    regions, a = model.backbone_features(v, a_in)
                    full = t(lambda: model(v, a_in))
                    fusion = t(lambda: model.forward_features(regions, a))
                rows.append(f"| {name} | {batch} | {prec} | {benchmark} | {full / batch * 1e3:.2f} ms | "
                            f"{fusion / batch * 1e3:.2f} ms |")
    torch.backends.cudnn.benchmark = False
    return rows


def train_step_rows(device: str, smoke: bool, t) -> list[str]:
    """One AVER training step (forward, CCC loss, backward, Adam) under bf16 autocast, as `aver-fast train` runs on
    GPU, and in float32 for comparison."""
    from aver_fast import AVER, AVERConfig, CCCLoss

    cfg = AVERConfig.tiny() if smoke else AVERConfig.paper()
    batch = 2 if smoke else 16
    model = AVER(cfg).to(device).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    video = torch.randn(batch, cfg.seq_len, 3, cfg.frames_per_clip, cfg.image_size, cfg.image_size, device=device)
    audio = torch.randn(batch, cfg.seq_len, 1, cfg.n_mels, cfg.audio_frames, device=device)
    target = torch.rand(batch, cfg.seq_len, 2, device=device) * 2 - 1
    rows = ["| AVER preset | batch | precision | cudnn.benchmark | training step |", "|---|---|---|---|---|"]
    for amp in (True, False):
        for benchmark in [False] if smoke else [False, True]:
            torch.backends.cudnn.benchmark = benchmark

            def step():
                with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                    pred = model(video, audio)
                loss = CCCLoss()(pred.float(), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            rows.append(f"| {'tiny' if smoke else 'paper'} | {batch} | {'bfloat16 autocast' if amp else 'float32'} | "
                        f"{benchmark} | {t(step) * 1e3:.1f} ms |")
    torch.backends.cudnn.benchmark = False
    return rows


def gate_rows(smoke: bool) -> list[str]:
    """The ahead-of-time compile gate (quick sweep) for this GPU's compute capability."""
    if smoke:
        return ["- skipped in the smoke run (CI runs `make check-gpu-quick` for sm_80/86/87/89/90)"]
    from aver_fast.gpu_build import check
    from aver_fast.kernels._plan import SHARED_MEMORY

    major, minor = torch.cuda.get_device_capability()
    cc = major * 10 + minor
    if cc not in SHARED_MEMORY:
        return [f"- sm_{cc} is not one of the gate's targets {sorted(SHARED_MEMORY)}"]
    results = check((cc,), quick=True)
    bad = [r for r in results if r.problems]
    return [f"- `aver-fast check-gpu-build --quick --arch {cc}`: {len(results) - len(bad)} of {len(results)} "
            f"specializations pass"] + [f"  - FAIL {r.kernel} [{r.spec}]: {'; '.join(r.problems)}" for r in bad]


def dispatch_rows(device: str) -> list[str]:
    """The measured backend choices the runs above cached (aver_fast.ops._autotune)."""
    from aver_fast.ops import _autotune

    rows = [f"Cache file: `{_autotune.cache_path()}`", "", "| key | backend |", "|---|---|"]
    for op in ("tlab_attention", "jca_correlation", "log_mel"):
        rows += [f"| `{k}` | {v} |" for k, v in _autotune.choices(op, torch.device(device)).items()]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1 (CI)")
    parser.add_argument("--sanitizer", action="store_true", help="run the CUDA dispatch tests under compute-sanitizer")
    parser.add_argument("--no-parity", action="store_true", help="skip the pytest parity run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections alone (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    import triton
    import triton.testing

    from aver_fast.bench import timer, write_section

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --smoke for the CPU dry run")
    if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--smoke runs the Triton kernels on CPU: set TRITON_INTERPRET=1")
    t = timer(device, quick=args.smoke)
    # a model call takes 10-500 ms: enough repetitions for a median (do_bench's 100 ms would time one or two)
    t_model = t if args.smoke else (lambda fn: triton.testing.do_bench(fn, warmup=200, rep=2000,
                                                                       return_mode="median") * 1e-3)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()}), Triton interpreter"
    torch.backends.cuda.matmul.allow_tf32 = False
    peak32, bw = peaks(device, torch.float32, t)
    peak_flops = {torch.float32: peak32}
    if not args.smoke:
        peak_flops[torch.bfloat16] = peaks(device, torch.bfloat16, t)[0]
    def section(title: str, rows: list[str]) -> list[str]:
        """One section of the report, printed as soon as it is measured (a run cut short still shows it)."""
        print("\n".join([f"### {title}", ""] + rows + [""]), flush=True)
        return [f"### {title}", ""] + rows + [""]

    lines = [f"## GPU: {name}{' (smoke run: tiny shapes, not a measurement)' if args.smoke else ''}", "",
             f"torch {torch.__version__}, triton {triton.__version__}, {time.strftime('%Y-%m-%d')}; measured "
             f"matmul peak {peak32 / 1e12:.1f} TFLOP/s float32 (no TF32)"
             + (f", {peak_flops[torch.bfloat16] / 1e12:.0f} TFLOP/s bfloat16" if not args.smoke else "")
             + f", copy bandwidth {bw / 1e9:.0f} GB/s.", ""]
    print("\n".join(lines), flush=True)
    run = set(args.only or SECTIONS) - ({"parity"} if args.no_parity else set())
    if "parity" in run:
        lines += section("Parity", parity(device, args.sanitizer))
    if "ops" in run:
        lines += section("Ops", op_rows(device, args.smoke, t, peak_flops, bw))
    if "overhead" in run:
        lines += section("Host overhead of one TLAB call", overhead_rows(device, args.smoke, t))
    if "inference" in run:
        lines += section("AVER inference", aver_rows(device, args.smoke, t_model))
    if "training" in run:
        lines += section("AVER training step", train_step_rows(device, args.smoke, t_model))
    if "gate" in run:
        lines += section("Ahead-of-time compile gate", gate_rows(args.smoke))
    lines += section("Measured backend choices", dispatch_rows(device))
    write_section(args.out, "\n".join(lines), section="gpu")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
