"""torch.func through every backend: grad, jacrev, jacfwd, vmap, per-sample gradients (vmap of grad), grad of grad
and functional_call ensembles give the reference's results (aver_fast/ops/_functorch.py)."""
import warnings

import pytest
import torch
from torch.func import functional_call, grad, jacfwd, jacrev, stack_module_state, vmap

import aver_fast
from aver_fast.ops import jca_correlation, log_mel, tlab_attention

from ._parity import require_cpp

# Triton runs in its interpreter on CPU, in float32 only (no float64 tl.dot); float64 is checked on the C++ backend
CASES = [("cpp", torch.float64, 1e-10), ("triton", torch.float32, 2e-4)]


def tlab(backend):
    return lambda x, y: tlab_attention(x, y * 2, x + y, backend=backend)


def jca(backend, w):
    return lambda x, j: jca_correlation(x, w, j, backend=backend)


TRANSFORMS = {
    "grad": lambda f, x, y: grad(lambda a, b: f(a, b).square().sum(), argnums=(0, 1))(x[0], y[0]),
    "jacrev": lambda f, x, y: jacrev(f, argnums=(0, 1))(x[0], y[0]),
    "jacfwd": lambda f, x, y: jacfwd(f, argnums=(0, 1))(x[0], y[0]),
    "vmap": lambda f, x, y: vmap(f)(x, y),
    "vmap_in_dims": lambda f, x, y: vmap(f, in_dims=(1, None))(x.transpose(0, 1), y[0]),
    "per_sample_grad": lambda f, x, y: vmap(grad(lambda a, b: f(a, b).square().sum(), argnums=1))(x, y),
    "grad_of_grad": lambda f, x, y: grad(lambda a: grad(lambda b: f(b, y[0]).square().sum())(a).sin().sum())(x[0]),
}


def close(got, want, tol):
    if isinstance(want, tuple):
        for g, w in zip(got, want, strict=True):
            close(g, w, tol)
        return
    assert got.shape == want.shape and got.dtype == want.dtype
    assert (got - want).abs().max().item() <= tol * max(1.0, want.abs().max().item())


# grad of grad runs the reference's double backward on every backend: checked on the C++ one, in float64
PAIRS = [(case, t) for case in CASES for t in TRANSFORMS if not (case[0] == "triton" and t == "grad_of_grad")]


@pytest.mark.parametrize(("case", "transform"), PAIRS, ids=[f"{c[0]}-{t}" for c, t in PAIRS])
@pytest.mark.parametrize("op", ["tlab", "jca"])
def test_transform_matches_reference(op, case, transform):
    require_cpp()
    backend, dtype, tol = case
    torch.manual_seed(0)
    x, y = torch.randn(3, 7, 12, dtype=dtype), torch.randn(3, 7, 12, dtype=dtype)  # odd L
    w = torch.randn(12, 12, dtype=dtype)
    make = tlab if op == "tlab" else (lambda be: jca(be, w))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*batching rule")  # no per-sample fallback of an aver_fast op
        got = TRANSFORMS[transform](make(backend), x, y)
    close(got, TRANSFORMS[transform](make("reference"), x, y), tol)


def test_vmap_over_the_weight_runs_per_sample():
    require_cpp()
    x, j, ws = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64), \
        torch.randn(3, 8, 6, dtype=torch.float64)
    got = vmap(lambda w: jca_correlation(x, w, j, backend="cpp"))(ws)
    close(got, torch.stack([jca_correlation(x, w, j, backend="reference") for w in ws]), 1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_log_mel_vmap(backend):
    require_cpp()
    x = torch.randn(3, 2, 4000)
    kwargs = dict(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, backend=backend)
    x[1, 0, 7] = float("nan")  # the non-finite rule has no data-dependent branch under vmap
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*batching rule for aten::stft")  # PyTorch has none for stft
        got = vmap(lambda s: log_mel(s, **kwargs))(x)
    want = log_mel(x, **kwargs)
    assert torch.equal(got.isnan(), want.isnan())
    close(torch.nan_to_num(got), torch.nan_to_num(want), 1e-5)


def test_functional_call_ensemble_and_per_sample_grads_of_a_module():
    """Two TLABs stacked with stack_module_state and run with vmap(functional_call), and per-sample gradients of
    one TLAB's weights: the C++ backend matches the reference. (Without the LSTM branch: PyTorch's nn.LSTM has no
    batching rule, whatever the backend.)"""
    require_cpp()
    torch.manual_seed(0)
    models = [aver_fast.TLAB(16, 2, use_lstm=False, backend="cpp").double().eval() for _ in range(2)]
    params, buffers = stack_module_state(models)
    x = torch.randn(4, 10, 16, dtype=torch.float64)

    def run(backend):
        base = aver_fast.TLAB(16, 2, use_lstm=False, backend=backend).double().eval()
        ensemble = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
        one = {k: v[0] for k, v in params.items()}
        per_sample = vmap(grad(lambda p, xi: functional_call(base, (p, buffers_0(buffers)), (xi[None],)).sum()),
                          in_dims=(None, 0))(one, x)
        return ensemble, per_sample

    ens_cpp, ps_cpp = run("cpp")
    ens_ref, ps_ref = run("reference")
    close(ens_cpp, ens_ref, 1e-10)
    for name in ps_ref:
        close(ps_cpp[name], ps_ref[name], 1e-9)


def buffers_0(buffers):
    return {k: v[0] for k, v in buffers.items()}


def test_log_mel_grad_under_torch_func_goes_through_the_reference():
    """The fused log_mel kernels have no backward: under grad they step aside, as outside transforms."""
    require_cpp()
    x = torch.randn(2, 2000, dtype=torch.float64)
    kwargs = dict(sample_rate=16000, n_fft=256, win_length=200, hop_length=100, n_mels=20)
    got = grad(lambda w: log_mel(w, **kwargs).sum())(x)
    leaf = x.clone().requires_grad_()
    want = torch.autograd.grad(log_mel(leaf, **kwargs).sum(), leaf)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


FORWARD_AD_OPS = {
    "tlab": lambda x, backend: tlab_attention(x, x * 2, x.sin(), backend=backend),
    "jca": lambda x, backend: jca_correlation(x, torch.outer(x[0, 0], x[1, 1]).cos(), x.exp(), backend=backend),
    "log_mel": lambda x, backend: log_mel(x.flatten(1), sample_rate=16000, n_fft=16, win_length=12, hop_length=6,
                                          n_mels=4, backend=backend),
}


@pytest.mark.parametrize("op", sorted(FORWARD_AD_OPS))
def test_forward_mode_ad_outside_torch_func_carries_tangents(op):
    """``torch.autograd.forward_ad``: the fused ops' autograd dropped the tangent (None), and the fused log_mel gave
    a zero one under ``torch.func.jvp``. Now the automatic choice runs the reference there and a requested fused
    backend refuses in one line."""
    require_cpp()
    import torch.autograd.forward_ad as fwad

    torch.manual_seed(0)
    x, t = torch.randn(3, 7, 12, dtype=torch.float64), torch.randn(3, 7, 12, dtype=torch.float64)
    f = FORWARD_AD_OPS[op]
    _, want = torch.func.jvp(lambda a: f(a, "reference"), (x,), (t,))
    with fwad.dual_level():
        out = f(fwad.make_dual(x, t), None)
        got = fwad.unpack_dual(out).tangent
        assert got is not None
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        with pytest.raises(RuntimeError, match="cannot run under forward-mode AD"):
            f(fwad.make_dual(x, t), "cpp")
    _, auto = torch.func.jvp(lambda a: f(a, None), (x,), (t,))
    torch.testing.assert_close(auto, want, rtol=1e-10, atol=1e-10)
    if op == "log_mel":  # no backward, no tangents: a fused log_mel under torch.func's jvp refuses (it gave 0)
        with pytest.raises(RuntimeError, match="carry no tangents"):
            torch.func.jvp(lambda a: f(a, "cpp"), (x,), (t,))
    else:  # under torch.func's jvp TLAB and JCA keep the fused forward, with the reference's tangents
        _, fused = torch.func.jvp(lambda a: f(a, "cpp"), (x,), (t,))
        torch.testing.assert_close(fused, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "no_input_requires_grad"])
def test_calls_without_a_gradient_skip_autograd_and_match(mode):
    """Calls that need no gradient (which skip the Python autograd kernel) give the reference's values and build no
    graph; a call whose input requires grad still records one."""
    require_cpp()
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 20) for _ in range(3))
    want = tlab_attention(q, k, v, backend="reference")
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, torch.enable_grad)
    if mode != "no_input_requires_grad":
        q.requires_grad_()
    with context():
        out = tlab_attention(q, k, v, backend="cpp")
    assert out.grad_fn is None and not out.requires_grad
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    leaf = q.detach().requires_grad_()
    assert tlab_attention(leaf, k, v, backend="cpp").grad_fn is not None
