"""aver_fast/cpu.py: what the numbers say about the CPU they came from."""
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
