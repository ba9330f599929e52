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
