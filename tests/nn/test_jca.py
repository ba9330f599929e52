import pytest
import torch

from aver_fast import JCA


def test_matches_equations_8_to_12():
    m = JCA(6, 10, seq_len=5, hidden=7).double()
    a, v = torch.randn(2, 5, 6, dtype=torch.float64), torch.randn(2, 5, 10, dtype=torch.float64)
    layer = m.layers[0]
    J = torch.cat([a, v], -1)  # Eq. 8
    d = 16
    c_a = torch.tanh(a @ layer.w_ja @ J.mT / d ** 0.5)  # Eq. 9
    c_v = torch.tanh(v @ layer.w_jv @ J.mT / d ** 0.5)
    h_a = torch.relu(a @ layer.w_a.weight.T + layer.w_a.bias + c_a @ layer.w_ca.weight.T + layer.w_ca.bias)  # Eq. 10
    h_v = torch.relu(v @ layer.w_v.weight.T + layer.w_v.bias + c_v @ layer.w_cv.weight.T + layer.w_cv.bias)
    x_a = h_a @ layer.w_ha.weight.T + layer.w_ha.bias + a  # Eq. 11
    x_v = h_v @ layer.w_hv.weight.T + layer.w_hv.bias + v
    torch.testing.assert_close(m(a, v), torch.cat([x_v, x_a], -1))  # Eq. 12


def test_recursive_layers_and_gradients():
    m = JCA(8, 8, seq_len=4, num_layers=2)
    a, v = torch.randn(3, 4, 8, requires_grad=True), torch.randn(3, 4, 8, requires_grad=True)
    out = m(a, v)
    assert out.shape == (3, 4, 16)
    out.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(v.grad).all()
    assert all(p.grad is not None for p in m.parameters())


def test_wrong_sequence_length_is_a_clear_error():
    m = JCA(8, 8, seq_len=16)
    with pytest.raises(ValueError, match="seq_len=16"):
        m(torch.randn(2, 12, 8), torch.randn(2, 12, 8))
    with pytest.raises(ValueError, match=r"v must be \(B, L, 8\)"):
        m(torch.randn(2, 16, 8), torch.randn(2, 16, 9))


def test_feature_attention_layer_matches_its_equations():
    """The public code's layer: Q = W_Q [v; a]; per modality S_m = tanh(K_m Q/√D) with K_m over time,
    H_m = ReLU(tanh((W_m m) S_m)), m' = m + ReLU(W_Om H_m)."""
    m = JCA(6, 10, seq_len=5, num_layers=1, attention="features").double().eval()
    layer = m.layers[0]
    a, v = torch.randn(2, 5, 6, dtype=torch.float64), torch.randn(2, 5, 10, dtype=torch.float64)

    def lin(f, x):
        return x @ f.weight.T + f.bias
    q = lin(layer.w_q, torch.cat([v, a], -1))
    out = []
    for x, w_k, w_m, w_o in ((a, layer.w_ka, layer.w_a, layer.w_oa), (v, layer.w_kv, layer.w_v, layer.w_ov)):
        s = torch.tanh(lin(w_k, x.mT) @ q / 16 ** 0.5)
        assert s.shape == (2, x.shape[-1], 16), "features by features"
        out.append(x + torch.relu(lin(w_o, torch.relu(torch.tanh(lin(w_m, x) @ s)))))
    torch.testing.assert_close(m(a, v), torch.cat([out[1], out[0]], -1))


def test_feature_attention_gradcheck_and_double_backward():
    m = JCA(3, 4, seq_len=3, num_layers=2, attention="features").double().eval()
    a = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (a, v))
    assert torch.autograd.gradgradcheck(m, (a, v))
    with pytest.raises(ValueError, match="attention must be one of"):
        JCA(3, 4, seq_len=3, attention="steps")
