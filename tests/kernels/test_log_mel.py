"""Triton log-mel (kernels/log_mel.py) against the float64 reference: within 1e-4 dB-relative in float32."""
import pytest
import torch

import aver_fast
from aver_fast.ops.log_mel import log_mel_ref

from .._ids import dtype_id, settings_id
from ._device import DEVICE

CASES = [
    (dict(sample_rate=8000, n_fft=128, win_length=100, hop_length=50, n_mels=20), 1001),
    (dict(sample_rate=8000, n_fft=64, win_length=33, hop_length=7, n_mels=8, pad_mode="circular", top_db=30.0), 257),
    (dict(sample_rate=16000, n_fft=100, win_length=100, hop_length=40, n_mels=16, center=False,
          pad_mode="constant"), 700),
    (dict(sample_rate=16000, n_fft=96, win_length=80, hop_length=30, n_mels=12, pad_mode="replicate",
          mel_scale="htk", norm=None, top_db=None, f_min=40.0, f_max=7000.0), 950),
]


def check(out, ref, tol):
    err = ((out.cpu().double() - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert out.shape == ref.shape and err <= tol, f"max dB-relative error {err:.2e} > {tol}"


@pytest.mark.parametrize("case, samples", CASES, ids=[f"{settings_id(c)}-S{n}" for c, n in CASES])
@pytest.mark.filterwarnings("ignore:mel filterbank has all-zero filters")
def test_parity_float32(case, samples):
    x = torch.randn(3, samples, dtype=torch.float64) * torch.linspace(1e-3, 1.0, samples, dtype=torch.float64)
    out = aver_fast.log_mel(x.float().to(DEVICE), backend="triton", **case)
    assert out.dtype == torch.float32
    check(out, log_mel_ref(x, **case), 1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=dtype_id)
def test_half_inputs_are_computed_in_float32(dtype):
    case = CASES[0][0]
    x = torch.randn(2, 1001).to(dtype)
    out = aver_fast.log_mel(x.to(DEVICE), backend="triton", **case)
    assert out.dtype == dtype
    # same input values, so the only differences are the float32 arithmetic and the final rounding to `dtype`
    check(out.float(), log_mel_ref(x.double(), **case), {torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype])


def test_batch_dims_and_silence():
    x = torch.randn(2, 2, 1200)
    x[1, 0] = 0
    case = CASES[0][0]
    out = aver_fast.log_mel(x.to(DEVICE), backend="triton", **case)
    check(out, log_mel_ref(x.double(), **case), 1e-4)
    assert ((out[1, 0] + 100.0).abs() < 1e-4).all()


@pytest.mark.parametrize("n_mels", [257, 300], ids=lambda n: f"M{n}")
@pytest.mark.filterwarnings("ignore:mel filterbank has all-zero filters")
def test_more_than_one_block_of_mel_bands(n_mels):
    """More mel bands than one program holds (once capped at 256: 257 was 12 dB off, 512 thousands)."""
    case = dict(sample_rate=16000, n_fft=1024, win_length=800, hop_length=400, n_mels=n_mels, top_db=None)
    x = torch.randn(2, 2000, dtype=torch.float64)
    check(aver_fast.log_mel(x.float().to(DEVICE), backend="triton", **case), log_mel_ref(x, **case), 1e-4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_and_inf_samples_give_nan_where_the_reference_does(bad):
    case = dict(CASES[0][0], top_db=None)
    x = torch.randn(2, 1001)
    x[0, 500] = bad
    out = aver_fast.log_mel(x.to(DEVICE), backend="triton", **case).cpu()
    ref = log_mel_ref(x.double(), **case)
    assert torch.isnan(ref[0]).any() and torch.equal(torch.isnan(out), torch.isnan(ref))
    check(out[1:], ref[1:], 1e-4)


def test_a_power_overflow_is_nan_like_the_reference():
    """The one rule of every backend (tests/ops/test_log_mel_backends.py): frames whose power overflows are NaN."""
    case = dict(CASES[0][0], top_db=None)
    x = torch.randn(2, 1001)
    x[0, 400:600] *= 1e20  # |X|² ~ 1e42: far past float32, whatever the algorithm
    out = aver_fast.log_mel(x.to(DEVICE), backend="triton", **case).cpu()
    ref = log_mel_ref(x, **case)
    assert torch.isnan(ref[0]).any() and torch.equal(torch.isnan(out), torch.isnan(ref))
    check(out[1:], log_mel_ref(x[1:].double(), **case), 1e-4)
