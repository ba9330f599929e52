"""model_summary: parameters per part and fusion FLOPs, the same in every dtype (LSTMs counted once)."""
import pytest
import torch

from aver_fast import AVER, AVERConfig, model_summary
from aver_fast.summary import _lstm_flops


@pytest.mark.parametrize("preset", ["paper", "public_code"])
def test_flops_are_the_same_in_float32_and_float64(preset):
    model = AVER(getattr(AVERConfig, preset)())
    f32 = model_summary(model).fusion_gflops
    f64 = model_summary(model.double()).fusion_gflops
    assert f32 == pytest.approx(f64, rel=1e-9)
    # the docs' numbers, to their two decimals (torch 2.15's FLOP counter finds 0.0008 G more in public_code())
    assert f32 == pytest.approx({"paper": 1.32, "public_code": 1.44}[preset], abs=5e-3)


def test_flops_do_not_depend_on_the_backend():
    """Was: the C++ ops hid their matmuls from the counter (paper() counted 1.245 G on CPU, JCA's correlation
    missing; the count changed with the backend that ran)."""
    from aver_fast.ops._registry import using_backend

    model = AVER(AVERConfig.paper())
    counts = set()
    for backend in ("cpp", "reference"):
        with using_backend(backend):
            counts.add(model_summary(model).fusion_gflops)
    assert len(counts) == 1


def test_lstm_flops_are_the_gate_matmuls():
    lstm = torch.nn.LSTM(6, 4, num_layers=2, bidirectional=True)
    # per step and direction: 4 gates x hidden x (input + hidden) multiply-adds, 2 flops each
    expected = 3 * 5 * 2 * 2 * 4 * 4 * ((6 + 4) + (8 + 4))
    assert _lstm_flops(lstm, batch=3, steps=5) == expected
