"""benchmarks/gpu_suite.py must run on a GPU machine in one go; here its --smoke CPU dry run (tiny shapes, Triton
interpreter) proves the script itself works and writes its report."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_suite_smoke_run(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# kept\n")
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_suite.py"), "--smoke", "--no-parity",
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# kept") and "<!-- aver-fast bench: gpu start -->" in text
    for needle in ("| tlab_attention |", "| jca_correlation |", "| log_mel |", "backbones + fusion",
                   "| bfloat16 autocast |", "### Host overhead of one TLAB call", "### Measured backend choices",
                   "### Ahead-of-time compile gate"):
        assert needle in text
    assert "failed:" not in text


def test_gpu_suite_runs_the_sections_asked_for(tmp_path):
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_suite.py"), "--smoke", "--only",
                          "inference", "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = out.read_text()
    assert "### AVER inference" in text and "backbones + fusion" in text
    for skipped in ("### Parity", "### Ops", "### Host overhead", "### AVER training step", "### Ahead-of-time"):
        assert skipped not in text
    assert "### AVER inference" in res.stdout  # each section is printed as soon as it is measured
