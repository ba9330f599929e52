"""`--precision auto` (aver_fast/models/precision.py): int8 for a quantized checkpoint, else bf16 on a CPU with native
bfloat16 (AVX512-BF16/AMX), else fp32 (CUDA too: bf16 measured slower there); explicit choices checked against what
the model can run."""
import pytest
import torch

import aver_fast.models.precision as P

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_the_fastest_accurate_path(monkeypatch, native):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    assert P.resolve_precision("auto", CPU, quantized=True) == "int8"
    assert P.resolve_precision("auto", CPU, quantized=False) == ("bf16" if native else "fp32")
    assert P.resolve_precision("auto", CUDA, quantized=False) == "fp32"  # whatever the CPU has
    assert P.resolve_precision("bf16", CUDA, quantized=False) == "bf16"  # asked for: native on a GPU, no warning
    assert P.resolve_precision("fp32", CPU, quantized=True) == "fp32"  # a quantized checkpoint's fp32 weights


def test_explicit_choices_are_checked(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        assert P.resolve_precision("bf16", CPU, quantized=False) == "fp32"
    with pytest.raises(ValueError, match="needs a quantized checkpoint"):
        P.resolve_precision("int8", CPU, quantized=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("fp16", CPU, quantized=False)


def test_the_context_matches_the_model(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    model = torch.nn.Linear(2, 2)
    with P.precision_context(model, "auto"):
        assert torch.is_autocast_enabled("cpu")
    with P.precision_context(model, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="needs a quantized checkpoint"):
        P.precision_context(model, "int8")

    class Engine(torch.nn.Module):
        int8 = True

    model.backbone = Engine()
    with P.precision_context(model, "auto"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="backbones are int8"):
        P.precision_context(model, "bf16")
