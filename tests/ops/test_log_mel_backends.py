"""Fast backends of log_mel against the float64 reference (within 1e-4 dB-relative in float32)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aver_fast
from aver_fast.ops import _registry
from aver_fast.ops.log_mel import log_mel_ref, make_params

from .._ids import dtype_id, settings_id
from ._parity import DTYPES, require_cpp

CASES = [
    dict(),  # the paper's settings: 44.1 kHz, n_fft 1024, win 882, hop 441, 128 slaney mels, top_db 80
    dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, mel_scale="htk", norm=None,
         top_db=None),
    dict(sample_rate=22050, n_fft=256, win_length=255, hop_length=64, n_mels=32, pad_mode="constant"),
    dict(sample_rate=8000, n_fft=128, win_length=128, hop_length=50, n_mels=20, pad_mode="replicate",
         f_min=100.0, f_max=3000.0),
    dict(sample_rate=8000, n_fft=64, win_length=33, hop_length=7, n_mels=8, pad_mode="circular", top_db=30.0),
    dict(sample_rate=16000, n_fft=512, win_length=512, hop_length=128, n_mels=64, center=False),
]
SAMPLES = [45599, 7001, 3000, 1001, 257, 5000]


def check(out, ref):
    """|out - ref| <= 1e-4 * max(|ref|, 1) dB, elementwise."""
    assert out.shape == ref.shape and torch.isfinite(out).all()
    err = ((out.double() - ref).abs() / ref.abs().clamp(min=1.0)).max().item()
    assert err <= 1e-4, f"max dB-relative error {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case, samples", list(zip(CASES, SAMPLES, strict=True)),
                         ids=[f"{settings_id(c)}-S{n}" for c, n in zip(CASES, SAMPLES, strict=True)])
@pytest.mark.filterwarnings("ignore:mel filterbank has all-zero filters")
def test_cpp_parity(case, samples, dtype):
    require_cpp()
    x = torch.randn(3, samples, dtype=torch.float64) * torch.linspace(1e-3, 1.0, samples, dtype=torch.float64)
    ref = log_mel_ref(x, **case)
    check(aver_fast.log_mel(x.to(dtype), backend="cpp", **case), ref)


@pytest.mark.usefixtures("every_isa")
def test_cpp_parity_every_isa():
    x = torch.randn(2, 45599, dtype=torch.float64)
    for dtype in DTYPES:
        check(aver_fast.log_mel(x.to(dtype), backend="cpp"), log_mel_ref(x))


def test_cpp_batch_dims_silence_and_loud_input():
    require_cpp()
    x = torch.randn(2, 2, 9000, dtype=torch.float64)
    x[0, 0] = 0.0  # silence: every bin at the 1e-10 floor
    x[1, 1] *= 1e4
    out = aver_fast.log_mel(x.float(), backend="cpp", sample_rate=16000, n_fft=512, hop_length=160, win_length=400,
                            n_mels=40)
    ref = log_mel_ref(x, sample_rate=16000, n_fft=512, hop_length=160, win_length=400, n_mels=40)
    check(out, ref)
    assert ((out[0, 0] + 100.0).abs() < 1e-4).all()  # 10 log10(1e-10)


def test_cpp_is_deterministic():
    require_cpp()
    x = torch.randn(4, 45599)
    assert torch.equal(aver_fast.log_mel(x, backend="cpp"), aver_fast.log_mel(x, backend="cpp"))


def test_fallbacks_to_reference_are_automatic_and_explicit_requests_raise():
    require_cpp()
    x = torch.randn(2, 4000)
    odd = dict(n_fft=400, win_length=400, hop_length=160, n_mels=40, sample_rate=16000)
    assert _registry.select("log_mel", x.device, x.dtype, None, (x, make_params(**odd))).name \
        == "reference"
    with pytest.raises(RuntimeError, match="power of two"):
        aver_fast.log_mel(x, backend="cpp", **odd)
    xg = x.clone().requires_grad_()
    out = aver_fast.log_mel(xg, sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    out.sum().backward()  # auto-selected the reference, which has gradients
    assert xg.grad is not None
    with pytest.raises(RuntimeError, match="no backward"):
        aver_fast.log_mel(xg, backend="cpp")


def test_direct_op_call_checks():
    require_cpp()
    with pytest.raises(RuntimeError, match="power of two"):
        torch.ops.aver_fast.log_mel(torch.randn(1, 4000), torch.ones(400), torch.ones(201, 8), 100, True, 0, None, 41)
    wave, window, fb = torch.randn(1, 4000), torch.hann_window(512), torch.ones(257, 8)
    assert torch.ops.aver_fast.log_mel(wave, window, fb, 100, True, 0, None, 41).shape == (1, 8, 41)
    for center, frames in ((True, 42), (False, 36), (True, 0)):  # frames that would read past the waveform
        with pytest.raises(RuntimeError, match="do not fit a waveform of 4000 samples"):
            torch.ops.aver_fast.log_mel(wave, window, fb, 100, center, 0, None, frames)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 2), st.sampled_from([16, 32, 64, 128, 256]), st.floats(0.3, 1.0),
       st.integers(1, 100),
       st.integers(4, 24), st.integers(0, 3), st.booleans(), st.sampled_from(DTYPES), st.integers(0, 2000))
@pytest.mark.filterwarnings("ignore:mel filterbank has all-zero filters")
def test_cpp_property_random_settings(seed, batch, n_fft, win_frac, hop, n_mels, pad, center, dtype, extra):
    require_cpp()
    torch.manual_seed(seed)  # inputs are a function of the example, so hypothesis can shrink failures
    win = max(1, int(n_fft * win_frac))
    samples = n_fft + 1 + extra
    kwargs = dict(sample_rate=16000, n_fft=n_fft, win_length=win, hop_length=hop, n_mels=n_mels,
                  pad_mode=("reflect", "constant", "replicate", "circular")[pad], center=center)
    x = torch.randn(batch, samples, dtype=torch.float64)
    check(aver_fast.log_mel(x.to(dtype), backend="cpp", **kwargs), log_mel_ref(x, **kwargs))


@pytest.mark.parametrize("top_db", [80.0, None], ids=["top_db80", "no-top_db"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_samples_give_nan_where_the_reference_does(bad, top_db):
    """A NaN/Inf sample must not turn into plausible dB values (the fast log once read NaN as ~385 dB)."""
    require_cpp()
    case = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, top_db=top_db)
    x = torch.randn(3, 4000)
    x[1, 1234] = bad
    ref = aver_fast.log_mel(x.double(), backend="reference", **case)
    out = aver_fast.log_mel(x, backend="cpp", **case)
    assert torch.isnan(ref[1]).any() and not torch.isnan(ref[[0, 2]]).any()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert torch.equal(torch.isinf(out), torch.isinf(ref))
    ok = torch.isfinite(ref)
    torch.testing.assert_close(out.double()[ok], ref[ok], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("top_db", [80.0, None], ids=["top_db80", "no-top_db"])
def test_a_finite_wave_whose_power_overflows_is_nan_in_every_backend(top_db):
    """Was: x 1e18 gave +inf from the C++ kernel and NaN (mixed with inf) from the reference. Rule: a frame whose
    power overflows is NaN in every band; with top_db its whole item."""
    require_cpp()
    case = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40, top_db=top_db)
    x = torch.randn(3, 4000)
    x[1, 2000:2400] *= 1e20  # a loud burst in item 1 only: |X|² ~ 1e43, far past float32
    ref = aver_fast.log_mel(x, backend="reference", **case)
    out = aver_fast.log_mel(x, backend="cpp", **case)
    loud = torch.isnan(ref[1]).all(dim=0)
    assert loud.any() and (loud.all() if top_db else not loud.all()), "the burst's frames (or the item) only"
    assert torch.isnan(ref[1]).any(dim=0).equal(loud), "a frame is NaN in every band or in none"
    assert not torch.isnan(ref[[0, 2]]).any() and not torch.isinf(ref).any() and not torch.isinf(out).any()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    ok = torch.isfinite(ref)
    torch.testing.assert_close(out[ok], ref[ok], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_an_empty_batch_gives_an_empty_result_in_every_backend(backend):
    """Was: the reference raised on a zero batch and the C++ kernel returned an empty result."""
    if backend == "cpp":
        require_cpp()
    for shape in ((0, 4000), (2, 0, 4000)):
        out = aver_fast.log_mel(torch.zeros(shape), backend=backend, sample_rate=16000, n_fft=512, win_length=400,
                                hop_length=160, n_mels=40)
        assert out.shape == (*shape[:-1], 40, 26)
