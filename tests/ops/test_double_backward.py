"""Second derivatives of every op through every backend: exact (gradgradcheck in float64 where the backend takes
float64, comparison with the reference's double backward otherwise) or a clear error, never wrong or None."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import aver_fast

from ._parity import require_cpp

SHAPES = {"tlab": [(2, 5, 4), (1, 7, 3)], "jca": [(2, 5, 3, 4), (1, 4, 6, 3)]}  # jca: (B, L, C, D)


def tlab_inputs(shape, dtype=torch.float64):
    return tuple(torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))


def jca_inputs(shape, dtype=torch.float64):
    b, steps, c, d = shape
    shapes = ((b, steps, c), (c, d), (b, steps, d))  # x, w, j
    return tuple(torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes)


OPS = {"tlab": (tlab_inputs, aver_fast.tlab_attention), "jca": (jca_inputs, aver_fast.jca_correlation)}
CASES = [(op, shape) for op in OPS for shape in SHAPES[op]]


def case_id(case) -> str:
    op, shape = case
    return op + "-" + ("B{}-L{}-D{}" if op == "tlab" else "B{}-L{}-C{}-D{}").format(*shape)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradgradcheck_float64(backend, case):
    if backend == "cpp":
        require_cpp()
    op, shape = case
    make, call = OPS[op]
    assert gradcheck(lambda *t: call(*t, backend=backend), make(shape))
    assert gradgradcheck(lambda *t: call(*t, backend=backend), make(shape))


def test_jca_op_second_output_double_backward():
    """torch.ops.aver_fast.jca_correlation also returns x @ w; gradients through both outputs stay exact."""
    require_cpp()
    inputs = jca_inputs((2, 4, 3, 5))
    fn = lambda x, w, j: torch.ops.aver_fast.jca_correlation(x, w, j, 0.7)  # noqa: E731
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("op", ["tlab", "jca"])
def test_cpp_gradient_penalty_matches_reference(op):
    """The case users meet: a gradient penalty ``|d out / d in|²`` backpropagated to the inputs (the issue's
    reproduction: cpp gave norm 25.8 against 39.8, or None)."""
    require_cpp()
    make, call = OPS[op]
    base = make(SHAPES[op][0])
    grads = {}
    for backend in ("reference", "cpp"):
        leaves = [t.detach().clone().requires_grad_() for t in base]
        out = call(*leaves, backend=backend)
        first = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
        penalty = sum(g.square().sum() for g in first)
        grads[backend] = torch.autograd.grad(penalty, leaves)
    for a, b in zip(grads["cpp"], grads["reference"], strict=True):
        assert a is not None
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_log_mel_fused_kernel_refuses_backward_clearly():
    """The fused log-mel kernels have no backward: the public function routes grad to the reference (exact double
    backward), and the raw op raises a clear error instead of returning a gradient-free result."""
    require_cpp()
    wave = torch.randn(1, 300, dtype=torch.float64, requires_grad=True)
    kw = dict(sample_rate=8000, n_fft=64, win_length=60, hop_length=32, n_mels=6)
    fn = lambda w: aver_fast.log_mel(w, **kw)  # noqa: E731
    assert gradgradcheck(fn, (wave,), atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError, match="have no backward"):
        aver_fast.log_mel(wave, backend="cpp", **kw)
    from aver_fast.ops.log_mel import _constants, make_params

    p = make_params(8000, 64, 60, 32, 6, 0.0, None, True, "reflect", "slaney", "slaney", 80.0)
    _, window, fb = _constants(p, wave.dtype, wave.device)
    out = torch.ops.aver_fast.log_mel(wave, window, fb, 32, True, 0, 80.0, 10)
    with pytest.raises(RuntimeError, match="have no backward"):
        out.sum().backward()


@pytest.mark.parametrize("op", ["tlab", "jca"])
def test_triton_double_backward_matches_reference(op):
    """Triton has no float64: its double backward (through the reference, in the input dtype) is compared with the
    reference's in float32 (on CPU in Triton's interpreter, as tests/conftest.py arranges)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    make, call = OPS[op]
    base = make(SHAPES[op][0], torch.float32)
    grads = {}
    for backend in ("reference", "triton"):
        leaves = [t.detach().to(device).requires_grad_() for t in base]
        out = call(*leaves, backend=backend)
        first = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
        grads[backend] = torch.autograd.grad(sum(g.square().sum() for g in first), leaves)
    for a, b in zip(grads["triton"], grads["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
