import torch

from aver_fast import AVER, AVERConfig
from aver_fast.models import RegressionHead


def _as_0_1(state: dict) -> dict:
    """The names 0.1 wrote: the LSTMs' weights without ``rnn.``, the TLAB projection as ``lstm_proj``."""
    out = {}
    for k, v in state.items():
        k = k.replace("blstm.rnn.", "blstm.").replace("lstm.rnn.", "lstm.").replace("lstm.proj.", "lstm_proj.")
        out[k] = v
    return out


def test_weights_saved_by_0_1_load_into_the_same_model():
    torch.manual_seed(0)
    m = AVER(AVERConfig.tiny()).eval()
    old = _as_0_1(m.state_dict())
    assert "blstm.weight_ih_l0" in old and "tlab_audio.lstm_proj.weight" in old
    fresh = AVER(AVERConfig.tiny()).eval()
    fresh.load_state_dict(old)
    v, a = torch.randn(2, 8, 16, 32), torch.randn(2, 8, 32)
    torch.testing.assert_close(fresh.forward_features(v, a), m.forward_features(v, a), rtol=0, atol=0)


def test_separate_heads():
    torch.manual_seed(0)
    head = RegressionHead(6, 4, 0.0, separate=True).eval()
    h = torch.randn(2, 3, 6)
    torch.testing.assert_close(head(h), torch.cat([head.valence(h), head.arousal(h)], -1))
    assert head(h).shape == (2, 3, 2)
    assert sum(p.numel() for p in head.parameters()) == 2 * (6 * 4 + 4 + 4 + 1)
