"""torch.compile(fullgraph=True) of modules that use the ops: no graph break, same results, gradients."""
import pytest
import torch

import aver_fast
from aver_fast import JCA, TLAB, MelSpectrogram

from .ops._parity import require_cpp


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Ops(torch.nn.Module):
    """The three ops alone (no nn.LSTM): must compile with the default dynamo settings."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(16, 24) / 4)

    def forward(self, q, k, v, j, wav):
        o = aver_fast.tlab_attention(q, k, v)
        c = aver_fast.jca_correlation(o.flatten(1, 2)[:, :6], self.w, j)
        mel = aver_fast.log_mel(wav, sample_rate=16000, n_fft=256, win_length=200, hop_length=80, n_mels=20)
        return o.sum() + c.sum() + mel.mean()


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_ops_compile_fullgraph_with_default_settings(backend, monkeypatch):
    require_cpp()
    monkeypatch.setenv("AVER_FAST_BACKEND", backend)
    m = Ops()
    args = (torch.randn(2, 2, 6, 16), torch.randn(2, 2, 6, 16), torch.randn(2, 2, 6, 16), torch.randn(2, 6, 24),
            torch.randn(2, 2000))
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(*args), m(*args), rtol=1e-5, atol=1e-4)


class Fusion(torch.nn.Module):
    """TLAB (without its LSTM: dynamo cannot trace nn.LSTM, see below) and JCA."""

    def __init__(self):
        super().__init__()
        self.tlab_a, self.tlab_v = TLAB(16, dropout=0.0, use_lstm=False), TLAB(16, dropout=0.0, use_lstm=False)
        self.jca = JCA(16, 16, seq_len=6)

    def forward(self, a, v):
        return self.jca(self.tlab_a(a), self.tlab_v(v))


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_compiled_fusion_matches_eager_without_graph_breaks(backend, monkeypatch):
    require_cpp()
    monkeypatch.setenv("AVER_FAST_BACKEND", backend)
    m = Fusion().eval()
    a, v = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    explanation = torch._dynamo.explain(m)(a, v)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(m, fullgraph=True, backend="eager" if backend == "reference" else "inductor")
    torch.testing.assert_close(compiled(a, v), m(a, v), rtol=1e-5, atol=1e-5)


def test_compiled_training_step_gradients_match():
    require_cpp()
    m = Fusion()
    a, v = torch.randn(2, 6, 16), torch.randn(2, 6, 16)
    torch.manual_seed(0)
    m(a, v).square().sum().backward()
    eager = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    compiled = torch.compile(m, fullgraph=True)
    torch.manual_seed(0)
    compiled(a, v).square().sum().backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, eager[n], rtol=1e-4, atol=1e-5, msg=n)


def test_compiled_mel_spectrogram():
    require_cpp()
    mel = MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    x = torch.randn(2, 8000)
    compiled = torch.compile(mel, fullgraph=True)
    torch.testing.assert_close(compiled(x), mel(x), rtol=1e-5, atol=1e-4)
    assert aver_fast.backends()["log_mel"]["cpu"]["selected"] == "cpp"


def test_full_tlab_breaks_only_at_the_lstm():
    """torch 2.14's dynamo cannot trace nn.LSTM (PyTorch limitation; BiLSTM's call of it); the ops add no graph break
    of their own."""
    require_cpp()
    m = TLAB(16, dropout=0.0).eval()
    x = torch.randn(2, 6, 16)
    explanation = torch._dynamo.explain(m)(x)
    assert explanation.graph_break_count >= 1
    assert all("self.rnn(x, state)" in (r.user_stack[-1].line or "") for r in explanation.break_reasons), \
        explanation.break_reasons
    torch.testing.assert_close(torch.compile(m)(x), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_log_mel_compiles_with_dynamic_shapes(backend, monkeypatch):
    """dynamic=True: three waveform lengths through one compiled function (the per-setting constants once failed
    to trace as assume_constant_result)."""
    require_cpp()
    monkeypatch.setenv("AVER_FAST_BACKEND", backend)
    mel = MelSpectrogram(sample_rate=16000, n_fft=256, win_length=200, hop_length=80, n_mels=20)
    compiled = torch.compile(mel, fullgraph=True, dynamic=True)
    for n in (1000, 1601, 2403):
        wav = torch.randn(2, n)
        torch.testing.assert_close(compiled(wav), mel(wav), rtol=1e-5, atol=1e-3)


def test_masked_tlab_compiles_fullgraph_and_exports_even_as_the_first_call():
    """Masks trace (no data-dependent branch), and the registry's first look-up of a backend traces too (was:
    "Read uninitialized cell" when a compiled call came before any eager one)."""
    from aver_fast.ops import _registry

    torch.manual_seed(0)
    m = TLAB(16, 2, use_lstm=False).eval()
    x, mask = torch.randn(2, 8, 16), torch.arange(8)[None] < torch.tensor([[8], [5]])
    _registry._AUTO.clear()
    torch._dynamo.reset()
    got = torch.compile(m, fullgraph=True)(x, mask)
    torch.testing.assert_close(got, m(x, mask))
    torch.testing.assert_close(torch.export.export(m, (x, mask)).module()(x, mask), m(x, mask))
