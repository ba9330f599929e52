"""One command for a GPU machine: parity of every GPU kernel, then timings and roofline of each op, then AVER
inference per instance at batch 1. Writes a markdown section into benchmarks/RESULTS.md (GPU markers).

    python benchmarks/gpu_suite.py                 # on a GPU machine
    python benchmarks/gpu_suite.py --sanitizer     # also run the CUDA dispatch tests under compute-sanitizer
    TRITON_INTERPRET=1 python benchmarks/gpu_suite.py --smoke --out /tmp/x.md   # tiny CPU dry run (CI)

Timings: median of CUDA-event timings after warm-up (triton.testing.do_bench); on the --smoke CPU run, medians of
wall-clock calls. Each op is compared with the reference, two scaled_dot_product_attention calls (TLAB),
torch.compile of the reference, and torch.stft + matmul (the log-mel reference). Roofline: the op's useful flops
and its minimal bytes (inputs read once, output written once) against the measured matmul peak and copy bandwidth;
"of floor" is max(flops/peak, bytes/bandwidth) / time.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timer(device: str, smoke: bool):
    if device == "cuda" and not smoke:
        import triton.testing

        return lambda fn: triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
    from aver_fast.bench import measure

    return lambda fn: measure(fn, min_time=0.05, warmup=1, max_runs=5).median


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
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    summary = res.stdout.strip().splitlines()[-1] if res.stdout else res.stderr[-300:]
    rows.append(f"- `pytest tests/kernels` on {device}: {summary}")
    if sanitizer:
        tool = shutil.which("compute-sanitizer")
        if tool is None:
            rows.append("- compute-sanitizer: not installed on this machine")
        else:
            res = subprocess.run([tool, "--tool", "memcheck", sys.executable, "-m", "pytest", "-q",
                                  "tests/kernels/test_cuda_dispatch.py"], cwd=ROOT, capture_output=True, text=True)
            tail = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
            rows.append(f"- compute-sanitizer memcheck on the CUDA dispatch tests: exit {res.returncode}, {tail}")
    return rows


def op_rows(device: str, smoke: bool, t, peak_flops: dict, bw: float) -> list[str]:
    import aver_fast
    from aver_fast.ops.jca_correlation import jca_correlation_ref
    from aver_fast.ops.log_mel import log_mel_ref
    from aver_fast.ops.tlab_attention import tlab_attention_ref

    rows = ["| op | shape | dtype | mode | implementation | time | vs reference | vs best native | TFLOP/s | "
            "GB/s | of floor |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ref_c = torch.compile(tlab_attention_ref, dynamic=False)
    jca_c = torch.compile(jca_correlation_ref, dynamic=False)
    compiled = not smoke  # the smoke run skips torch.compile (minutes of compilation on 2 CPU cores)

    def emit(op, shape, dtype, mode, impls, flops, nbytes):
        times = {}
        impls = {k: v for k, v in impls.items() if compiled or not k.startswith("compile")}
        dname = str(dtype).replace("torch.", "")
        for name, fn in impls.items():
            try:
                times[name] = t(fn)
            except Exception as e:  # report, do not hide, an implementation that fails here
                rows.append(f"| {op} | {shape} | {dname} | {mode} | {name} | failed: {type(e).__name__}: "
                            f"{str(e)[:80]} | | | | | |")
        if "reference" not in times:
            return
        best_native = min(v for k, v in times.items() if k != "triton")
        for name, sec in times.items():
            floor = max(flops / peak_flops[dtype], nbytes / bw)
            rows.append(f"| {op} | {shape} | {dname} | {mode} | {name} | {sec * 1e6:,.1f} µs | "
                        f"{times['reference'] / sec:.2f}× | {best_native / sec:.2f}× | {flops / sec / 1e12:.2f} | "
                        f"{nbytes / sec / 1e9:.0f} | {100 * floor / sec:.0f}% |")

    def fwd_bwd(fn, leaves):
        out = fn(*leaves)
        g = torch.randn_like(out)

        def run():
            for x in leaves:
                x.grad = None
            fn(*leaves).backward(g)
        return run

    dtypes = [torch.float32] if smoke else [torch.float32, torch.bfloat16]
    tlab_shapes = [(2, 2, 16, 32), (1, 1, 40, 16)] if smoke else [(16, 2, 16, 256), (64, 2, 128, 64), (8, 2, 1024, 64)]
    for dtype in dtypes:
        for b, h, L, d in tlab_shapes:
            q, k, v = (torch.randn(b, h, L, d, device=device, dtype=dtype) for _ in range(3))
            shape = f"({b}, {h}, {L}, {d})"
            flops, nbytes = 6 * L * L * d * b * h, 4 * q.numel() * q.element_size()
            sdpa = lambda a, b_, c: F.scaled_dot_product_attention(a, b_, F.scaled_dot_product_attention(b_, a, c))  # noqa: E731
            emit("tlab_attention", shape, dtype, "fwd", {
                "triton": lambda: aver_fast.tlab_attention(q, k, v, backend="triton"),
                "reference": lambda: tlab_attention_ref(q, k, v),
                "sdpa pair": lambda: sdpa(q, k, v),
                "compile(reference)": lambda: ref_c(q, k, v)}, flops, nbytes)
            leaves = [x.clone().requires_grad_() for x in (q, k, v)]
            emit("tlab_attention", shape, dtype, "fwd+bwd", {
                "triton": fwd_bwd(lambda a, b_, c: aver_fast.tlab_attention(a, b_, c, backend="triton"), leaves),
                "reference": fwd_bwd(tlab_attention_ref, leaves),
                "sdpa pair": fwd_bwd(sdpa, leaves)}, 3 * flops, 2 * nbytes)
        b, L, c, d = (2, 16, 32, 48) if smoke else (16, 16, 512, 1024)
        x, w, j = (torch.randn(b, L, c, device=device, dtype=dtype), torch.randn(c, d, device=device, dtype=dtype),
                   torch.randn(b, L, d, device=device, dtype=dtype))
        flops = 2 * b * L * c * d + 2 * b * L * L * d
        nbytes = (x.numel() + w.numel() + j.numel() + b * L * L) * x.element_size()
        emit("jca_correlation", f"({b}, {L}, {c}->{d})", dtype, "fwd", {
            "triton": lambda: aver_fast.jca_correlation(x, w, j, backend="triton"),
            "triton, both modalities in one launch": lambda: aver_fast.ops.jca_correlation_pair(x, w, x, w, j,
                                                                                               backend="triton"),
            "reference": lambda: jca_correlation_ref(x, w, j),
            "compile(reference)": lambda: jca_c(x, w, j)}, flops, nbytes)
        leaves = [z.clone().requires_grad_() for z in (x, w, j)]
        emit("jca_correlation", f"({b}, {L}, {c}->{d})", dtype, "fwd+bwd", {
            "triton": fwd_bwd(lambda a, b_, c_: aver_fast.jca_correlation(a, b_, c_, backend="triton"), leaves),
            "reference": fwd_bwd(jca_correlation_ref, leaves)}, 3 * flops, 2 * nbytes)
    clips, samples = (1, 1500) if smoke else (16, 45599)
    wav = torch.randn(clips, samples, device=device)
    frames = 1 + samples // 441
    flops = clips * frames * (2 * 1024 * 513 * 2 + 2 * 513 * 128)  # DFT as a matmul + dense mel, as computed
    emit("log_mel", f"{clips} x {samples}", torch.float32, "fwd", {
        "triton": lambda: aver_fast.log_mel(wav, backend="triton"),
        "reference": lambda: log_mel_ref(wav)}, flops, (wav.numel() + clips * 128 * frames) * 4)
    return rows


def aver_rows(device: str, smoke: bool, t) -> list[str]:
    from aver_fast import AVER, AVERConfig

    cfg = AVERConfig.tiny() if smoke else AVERConfig.paper()
    model = AVER(cfg).to(device).eval()
    video = torch.randn(1, cfg.seq_len, 3, cfg.frames_per_clip, cfg.image_size, cfg.image_size, device=device)
    audio = torch.randn(1, cfg.seq_len, 1, cfg.n_mels, cfg.audio_frames, device=device)
    rows = ["| AVER preset | precision | what | per instance (batch 1) |", "|---|---|---|---|"]
    for prec in (["float32"] if smoke else ["float32", "bfloat16 autocast"]):
        ctx = (torch.autocast(device, dtype=torch.bfloat16) if prec != "float32" else torch.no_grad())
        with torch.no_grad(), ctx:
            regions, a = model.backbone_features(video, audio)
            full = t(lambda: model(video, audio))
            fusion = t(lambda: model.forward_features(regions, a))
        name = "tiny" if smoke else "paper"
        rows.append(f"| {name} | {prec} | backbones + fusion | {full * 1e3:.2f} ms |")
        rows.append(f"| {name} | {prec} | fusion on cached features | {fusion * 1e3:.2f} ms |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "RESULTS.md"))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1 (CI)")
    parser.add_argument("--sanitizer", action="store_true", help="run the CUDA dispatch tests under compute-sanitizer")
    parser.add_argument("--no-parity", action="store_true", help="skip the pytest parity run")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    import triton

    from aver_fast.bench import write_section

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --smoke for the CPU dry run")
    if args.smoke and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--smoke runs the Triton kernels on CPU: set TRITON_INTERPRET=1")
    t = timer(device, args.smoke)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()}), Triton interpreter"
    torch.backends.cuda.matmul.allow_tf32 = False
    peak32, bw = peaks(device, torch.float32, t)
    peak_flops = {torch.float32: peak32}
    if not args.smoke:
        peak_flops[torch.bfloat16] = peaks(device, torch.bfloat16, t)[0]
    lines = [f"## GPU: {name}{' (smoke run: tiny shapes, not a measurement)' if args.smoke else ''}", "",
             f"torch {torch.__version__}, triton {triton.__version__}, {time.strftime('%Y-%m-%d')}; measured "
             f"matmul peak {peak32 / 1e12:.1f} TFLOP/s float32 (no TF32)"
             + (f", {peak_flops[torch.bfloat16] / 1e12:.0f} TFLOP/s bfloat16" if not args.smoke else "")
             + f", copy bandwidth {bw / 1e9:.0f} GB/s.", ""]
    if not args.no_parity:
        lines += ["### Parity", ""] + parity(device, args.sanitizer) + [""]
    lines += ["### Ops", ""] + op_rows(device, args.smoke, t, peak_flops, bw) + [""]
    lines += ["### AVER inference", ""] + aver_rows(device, args.smoke, t) + [""]
    report = "\n".join(lines)
    print(report)
    write_section(args.out, report, section="gpu")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
