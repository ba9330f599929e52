import pytest
import torch
from torch import nn

from aver_fast.nn import BiLSTM


def test_plain_is_a_bidirectional_lstm():
    m = BiLSTM(6, 4, num_layers=2).eval()
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(m(x), m.rnn(x)[0], rtol=0, atol=0)
    assert m(x).shape == (3, 5, 8) and m.out_size == 8


def test_public_options_learned_state_projection_normalisation():
    torch.manual_seed(0)
    m = BiLSTM(6, 4, num_layers=2, out_size=7, learned_init=True, normalize=True).double().eval()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    init = m.init_state  # (2 directions * 2 layers * 2 (h, c), 4): h rows first
    h0, c0 = (init[:4, None].expand(4, 3, 4).contiguous(), init[4:, None].expand(4, 3, 4).contiguous())
    h = m.rnn(x, (h0, c0))[0]
    expected = nn.functional.normalize(m.proj(torch.cat([x, h], -1)), dim=-1)
    torch.testing.assert_close(m(x), expected)
    torch.testing.assert_close(m(x).norm(dim=-1), torch.ones(3, 5, dtype=torch.float64))


def test_gradcheck_including_the_initial_state():
    m = BiLSTM(3, 2, num_layers=2, out_size=3, learned_init=True, normalize=True).double().eval()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    init = m.init_state.detach().clone().requires_grad_()

    def f(x, init):
        return torch.func.functional_call(m, {"init_state": init}, (x,), strict=False)
    assert torch.autograd.gradcheck(f, (x, init))


def test_0_1_state_dicts_load():
    """0.1 stored the joint BiLSTM as a bare nn.LSTM (blstm.weight_ih_l0): the same tensors load."""
    torch.manual_seed(0)
    old = nn.LSTM(6, 4, 2, batch_first=True, bidirectional=True).state_dict()
    m = BiLSTM(6, 4, num_layers=2)
    m.load_state_dict(old)
    for k, v in old.items():
        assert torch.equal(m.rnn.state_dict()[k], v)


def test_bad_sizes():
    with pytest.raises(ValueError, match="must be >= 1"):
        BiLSTM(0, 4)
