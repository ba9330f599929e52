"""Every drop-in module: output shape, and gradients reaching its input and every parameter."""
import pytest
import torch

from aver_fast.nn import AVGA, JCA, TCN, TLAB, AudioResNet18, MelSpectrogram, R2Plus1D18

CASES = {
    "TCN": (lambda: TCN(6, (8, 5), kernel_size=3, dilation=2), lambda: (torch.randn(2, 9, 6),), (2, 9, 5)),
    "TLAB": (lambda: TLAB(8), lambda: (torch.randn(2, 7, 8),), (2, 7, 8)),
    "JCA": (lambda: JCA(6, 10, seq_len=5), lambda: (torch.randn(2, 5, 6), torch.randn(2, 5, 10)), (2, 5, 16)),
    "AVGA": (lambda: AVGA(8, 6, hidden=10, attn_dim=4), lambda: (torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6)),
             (2, 3, 8)),
    "R2Plus1D18": (lambda: R2Plus1D18(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
                   lambda: (torch.randn(2, 3, 4, 32, 32),), (2, 16)),
    "AudioResNet18": (lambda: AudioResNet18(widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
                      lambda: (torch.randn(2, 1, 32, 20),), (2, 16)),
    "MelSpectrogram": (lambda: MelSpectrogram(sample_rate=16000, n_fft=256, win_length=200, hop_length=100,
                                              n_mels=20), lambda: (torch.randn(2, 1000),), (2, 20, 11)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shape_and_gradients(name):
    make, inputs, shape = CASES[name]
    m = make()
    xs = [x.requires_grad_() for x in inputs()]
    y = m(*xs)
    assert y.shape == shape
    y.square().mean().backward()
    for x in xs:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing


PICKLABLE = [name for name in CASES if name != "AVGA"] + ["AVER"]


def make(name):
    if name == "AVER":
        from aver_fast.models import AVER, AVERConfig
        return AVER(AVERConfig.tiny()), None
    m, inputs, _ = CASES[name]
    return m(), inputs()


@pytest.mark.parametrize("name", PICKLABLE)
def test_torch_save_pickle_and_deepcopy_keep_the_module(name, tmp_path):
    """Whole-module torch.save (and so multiprocessing spawn) works, the weight-normalised TCN included; the copy
    has the same outputs, training mode, dtype and trainable parameters."""
    import copy
    import pickle

    torch.manual_seed(0)
    m, inputs = make(name)
    m = m.double().eval()
    torch.save(m, tmp_path / "m.pt")
    copies = [torch.load(tmp_path / "m.pt", weights_only=False), pickle.loads(pickle.dumps(m)), copy.deepcopy(m)]
    for c in copies:
        assert [x.training for x in c.modules()] == [x.training for x in m.modules()]
        assert [(n, p.dtype, p.requires_grad) for n, p in c.named_parameters()] == \
            [(n, p.dtype, p.requires_grad) for n, p in m.named_parameters()]
        if inputs is not None:
            xs = [x.double() for x in inputs]
            torch.testing.assert_close(c(*xs), m(*xs), rtol=0, atol=0)


def _spawned_output(m, x):
    with torch.no_grad():
        return m(x)


def test_a_tlab_crosses_a_spawned_process():
    import multiprocessing as mp

    torch.manual_seed(0)
    m, x = TLAB(8).eval(), torch.randn(2, 7, 8)
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_spawned_output, (m, x))
    with torch.no_grad():
        torch.testing.assert_close(got, m(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["TLAB", "JCA"])
def test_unbatched_input_is_one_batch_of_one(name):
    torch.manual_seed(0)
    make_m, inputs, _ = CASES[name]
    m = make_m().eval()
    xs = inputs()
    one = m(*[x[1] for x in xs])
    torch.testing.assert_close(one, m(*[x[1:2] for x in xs])[0])


@pytest.mark.parametrize("name", ["TLAB", "JCA"])
def test_backend_keyword_chooses_the_ops_backend(name):
    """``backend=`` on the module reaches its op; a bad name fails at construction, naming the choices."""
    from aver_fast.ops import _registry

    make_m, inputs, _ = CASES[name]
    seen = []
    with _registry.observe(lambda _op, backend, _s: seen.append(backend)):
        for backend in ("reference", "cpp"):
            m = (TLAB(8, backend=backend) if name == "TLAB" else JCA(6, 10, seq_len=5, backend=backend))
            m(*inputs())
            assert seen and set(seen) == {backend}, (backend, seen)
            seen.clear()
    with pytest.raises(ValueError, match=r"backend='cuda' is not a backend; expected one of"):
        TLAB(8, backend="cuda") if name == "TLAB" else JCA(6, 10, seq_len=5, backend="cuda")


def test_using_backend_is_public():
    import aver_fast
    from aver_fast.ops import _registry

    seen = []
    with _registry.observe(lambda _op, backend, _s: seen.append(backend)), aver_fast.using_backend("reference"):
        TLAB(8)(torch.randn(2, 7, 8))
    assert seen == ["reference"]


@pytest.mark.parametrize("name", ["TLAB", "MelSpectrogram"])
def test_export_of_a_module_that_never_ran(name):
    """torch.export on a fresh module (MelSpectrogram's filterbank is a buffer, nothing data-dependent is traced)."""
    torch.manual_seed(0)
    make_m, inputs, _ = CASES[name]
    m, xs = make_m().eval(), inputs()
    program = torch.export.export(m, tuple(xs))
    torch.testing.assert_close(program.module()(*xs), m(*xs))
