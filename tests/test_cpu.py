"""aver_fast/cpu.py: what the numbers say about the CPU they came from."""
import os
import subprocess
import sys

import pytest

from aver_fast import cpu

GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 1
cpu family\t: 26
model\t\t: 2
model name\t: another
"""


@pytest.fixture
def cpuinfo(monkeypatch):
    def use(text: str) -> None:
        monkeypatch.setattr(cpu, "_cpuinfo", lambda: text)
        cpu.model_name.cache_clear()
        cpu.flags.cache_clear()
    yield use
    cpu.model_name.cache_clear()
    cpu.flags.cache_clear()


def test_model_name_carries_family_and_model_of_the_first_processor(cpuinfo):
    """A VM's generic "AMD EPYC" is Zen 4 (family 25, model 17) or Zen 5 (family 26): the numbers differ ~2x."""
    cpuinfo(GENOA)
    assert cpu.model_name() == "AMD EPYC (family 25, model 17)"
    assert {"avx2", "avx512_bf16"} <= cpu.flags()


def test_model_name_without_family_numbers(cpuinfo):
    cpuinfo("processor\t: 0\nmodel name\t: Neoverse-V2\nCPU implementer\t: 0x41\n")
    assert cpu.model_name() == "Neoverse-V2"
    cpuinfo("model name\t: Some CPU\ncpu family\t: ?\nmodel\t\t: 1\n")
    assert cpu.model_name() == "Some CPU"


def test_a_capped_process_compiles_into_a_cache_of_its_own(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert cpu.separate_compile_cache() is None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "AVX2")
    path = cpu.separate_compile_cache()
    assert path.endswith(os.sep + "aten-avx2") and os.environ["TORCHINDUCTOR_CACHE_DIR"] == path
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/chosen")  # the user's choice stays
    assert cpu.separate_compile_cache() is None and os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/chosen"


COMPILE_TWICE = """
import sys, torch
from aver_fast.cpu import separate_compile_cache
separate_compile_cache()
x = torch.arange(1000, dtype=torch.float32)
y = torch.compile(lambda t: t * 2 + 1)(x)
sys.exit(0 if torch.equal(y, x * 2 + 1) else 3)
"""


def test_compiled_code_is_right_after_a_process_with_another_capability(tmp_path):
    # torch 2.14.1 shares inductor's cache between them: the capped process then ran the other's code as garbage
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env["TMPDIR"] = str(tmp_path)  # inductor's default cache folder lies under it
    for extra in ({}, {"ATEN_CPU_CAPABILITY": "avx2"}, {}):
        res = subprocess.run([sys.executable, "-c", COMPILE_TWICE], env=env | extra, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, (extra, res.returncode, res.stderr[-2000:])
