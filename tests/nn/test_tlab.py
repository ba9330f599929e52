import pytest
import torch

from aver_fast import TLAB


@pytest.mark.parametrize("attention", ["global_local", "cross"])
def test_shape_and_gradients(attention):
    m = TLAB(16, num_heads=2, tcn_dilation=2, attention=attention)
    x = torch.randn(3, 9, 16, requires_grad=True)
    y = m(x)
    assert y.shape == (3, 9, 16)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in m.parameters()), "every parameter takes part in the output"


def test_global_local_differs_from_cross():
    torch.manual_seed(0)
    a = TLAB(16, attention="global_local", dropout=0.0).eval()
    b = TLAB(16, attention="cross", dropout=0.0).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 16)
    assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize("flags, absent", [
    (dict(use_tcn=False), ["tcn"]),
    (dict(use_lstm=False), ["lstm"]),
    (dict(use_attention=False), ["w_q", "w_k", "w_v", "w_o"]),
    (dict(use_tcn=False, use_lstm=False, use_attention=False), ["tcn", "lstm", "w_q"]),
], ids=["no-tcn", "no-lstm", "no-attention", "none"])
def test_ablation_flags_remove_parts(flags, absent):
    full = TLAB(16)
    m = TLAB(16, **flags)
    names = {n.split(".")[0] for n, _ in m.named_parameters()}
    for part in absent:
        assert getattr(m, part) is None and part not in names
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in full.parameters())
    assert m(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_paper_size_matches_public_code_count():
    assert sum(p.numel() for p in TLAB(512).parameters()) == 7_880_192


def test_no_attention_uses_tcn_and_lstm_sum():
    m = TLAB(8, use_attention=False, dropout=0.0).eval()
    x = torch.randn(2, 6, 8)
    expected = m.norm(m.lstm.proj(torch.cat([x, m.lstm.rnn(x)[0]], -1)) + m.tcn(x))
    torch.testing.assert_close(m(x), expected)


def test_bad_inputs():
    m = TLAB(16)
    with pytest.raises(ValueError, match=r"x must be \(B, L, 16\)"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        m(torch.ones(2, 5, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TLAB(15, num_heads=2)
    with pytest.raises(ValueError, match="attention must be"):
        TLAB(16, attention="local")
    with pytest.raises(ValueError, match="attention_dropout .* needs attention='cross'"):
        TLAB(16, attention_dropout=0.1)


def test_public_code_options():
    """The public TLAB: no weight norm (plain conv keys), a learned initial LSTM state that changes the output, an
    L2-normalised LSTM branch, dropout on the cross-attention weights in training only."""
    torch.manual_seed(0)
    m = TLAB(16, tcn_dilation=2, attention="cross", lstm_learned_init=True, lstm_normalize=True,
             tcn_weight_norm=False, lstm_dropout=0.4, tcn_dropout=0.2, attention_dropout=0.1).eval()
    names = set(m.state_dict())
    assert {"tcn.blocks.0.conv1.weight", "lstm.init_state", "lstm.proj.weight"} <= names
    assert not any("parametrizations" in n for n in names)
    x = torch.randn(2, 7, 16)
    h = m.lstm(x)
    torch.testing.assert_close(h.norm(dim=-1), torch.ones(2, 7))
    y = m(x)
    with torch.no_grad():
        m.lstm.init_state.zero_()
    assert not torch.allclose(m(x), y), "the learned initial state takes part"
    torch.testing.assert_close(m(x), m(x))  # eval: deterministic
    m.train()
    assert not torch.allclose(m(x), m(x)), "training: attention dropout"


def test_checkpoints_of_0_1_still_load():
    """0.1 named the LSTM branch's weights lstm.weight_* and lstm_proj.*; they load into the new layout."""
    torch.manual_seed(0)
    m = TLAB(16).eval()
    old = {k.replace("lstm.rnn.", "lstm.").replace("lstm.proj.", "lstm_proj."): v for k, v in m.state_dict().items()}
    assert "lstm_proj.weight" in old and "lstm.weight_ih_l0" in old
    fresh = TLAB(16).eval()
    fresh.load_state_dict(old)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(fresh(x), m(x), rtol=0, atol=0)
