"""Padding masks through the modules and models: the real steps' outputs equal those of the unpadded sequence
(TLAB, TCN with trailing padding, BiLSTM, the models' per-step TLAB/BiLSTM path) or at least do not depend on what
padded steps hold (JCA, built for ``seq_len`` steps; the models); padded rows are 0 and get no gradient."""
import pytest
import torch

from aver_fast import JCA, TLAB
from aver_fast.models import AVER, AVERConfig, JCABaseline, LeaderFollower
from aver_fast.nn import TCN, BiLSTM

LENGTHS = (10, 6, 1, 0)  # a full item, a padded one, one real step, none


def prefix_mask(lengths=LENGTHS, L=10):
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]


def poisoned(x, mask):
    """``x`` with NaN in every padded step: a leak shows."""
    return x.masked_fill(~mask.view(*mask.shape, *(1,) * (x.dim() - 2)), float("nan"))


@pytest.mark.parametrize("holes", [False, True], ids=["trailing", "holes"])
@pytest.mark.parametrize("attention", ["global_local", "cross"])
@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_tlab_real_steps_equal_the_unpadded_sequence(backend, attention, holes):
    torch.manual_seed(0)
    m = TLAB(16, 2, attention=attention, backend=backend).double().eval()
    mask = prefix_mask()
    if holes:
        mask = mask[:, torch.randperm(10)]
    x = torch.randn(4, 10, 16, dtype=torch.float64, requires_grad=True)
    y = m(poisoned(x, mask), mask)
    y.square().sum().backward()
    assert not y.isnan().any() and (y[~mask] == 0).all()
    assert (x.grad[~mask] == 0).all() and not x.grad.isnan().any()
    for b, row in enumerate(mask):
        if row.any():
            torch.testing.assert_close(y[b, row], m(x[b:b + 1, row].detach())[0], rtol=1e-12, atol=1e-12)


def test_tlab_unbatched_with_a_mask():
    torch.manual_seed(0)
    m = TLAB(8).double().eval()
    x, mask = torch.randn(6, 8, dtype=torch.float64), torch.tensor([True] * 4 + [False] * 2)
    torch.testing.assert_close(m(x, mask)[:4], m(x[:4]))


def test_tcn_with_trailing_padding_and_the_bilstm_packed():
    torch.manual_seed(0)
    mask = prefix_mask()
    x = torch.randn(4, 10, 6, dtype=torch.float64)
    tcn = TCN(6, (8, 5), kernel_size=3, dilation=2).double().eval()
    lstm = BiLSTM(6, 7, num_layers=2, out_size=9, learned_init=True, normalize=True).double().eval()
    for module in (tcn, lstm):
        y = module(poisoned(x, mask), mask)
        assert (y[~mask] == 0).all()
        for b, n in enumerate(LENGTHS):
            if n:
                torch.testing.assert_close(y[b, :n], module(x[b:b + 1, :n])[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention", ["time", "features"])
def test_jca_real_steps_do_not_depend_on_padded_ones(attention):
    torch.manual_seed(0)
    m = JCA(6, 10, seq_len=10, num_layers=2, attention=attention).double().eval()
    mask = prefix_mask()
    a, v = torch.randn(4, 10, 6, dtype=torch.float64), torch.randn(4, 10, 10, dtype=torch.float64)
    y = m(a, v, mask)
    noise = torch.randn_like(a) * 100, torch.randn_like(v) * 100
    y2 = m(torch.where(mask[..., None], a, noise[0]), torch.where(mask[..., None], v, noise[1]), mask)
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    assert (y[~mask] == 0).all()
    torch.testing.assert_close(m(a, v, torch.ones(4, 10, dtype=torch.bool)), m(a, v))


@pytest.mark.parametrize("pool", ["none", "mean"])
@pytest.mark.parametrize("model", [AVER, JCABaseline, LeaderFollower], ids=lambda c: c.__name__)
def test_models_real_steps_do_not_depend_on_padded_ones(model, pool):
    torch.manual_seed(0)
    cfg = AVERConfig.tiny(pool=pool)
    m = model(cfg).double().eval()
    L = cfg.seq_len
    mask = prefix_mask((L, L - 3, 1), L)
    v = torch.randn(3, L, cfg.num_regions, cfg.video_dim, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, L, cfg.audio_dim, dtype=torch.float64, requires_grad=True)
    y = m.forward_features(poisoned(v, mask), poisoned(a, mask), mask)
    y.square().sum().backward()
    assert not y.isnan().any() and (a.grad[~mask] == 0).all() and (v.grad[~mask] == 0).all()
    if pool == "none":
        assert (y[~mask] == 0).all()
    torch.testing.assert_close(y[0], m.forward_features(v[:1].detach(), a[:1].detach())[0], rtol=1e-12, atol=1e-12)
    if model is AVER and pool == "mean":  # JCA aside (seq_len-wide weights), AVER's mean is over the real steps
        y_plain = m.forward_features(v.detach(), a.detach())
        assert not torch.allclose(y[1], y_plain[1])


def test_public_code_preset_ignores_masks_and_the_switch_turns_them_on():
    torch.manual_seed(0)
    cfg = AVERConfig.tiny(mask_padding=False)
    m = AVER(cfg).double().eval()
    L = cfg.seq_len
    v = torch.randn(2, L, cfg.num_regions, cfg.video_dim, dtype=torch.float64)
    a = torch.randn(2, L, cfg.audio_dim, dtype=torch.float64)
    mask = prefix_mask((L, 3), L)
    torch.testing.assert_close(m.forward_features(v, a, mask), m.forward_features(v, a), rtol=0, atol=0)
    assert AVERConfig.public_code().mask_padding is False and AVERConfig.paper().mask_padding is True
    with pytest.raises(ValueError, match=r"mask has shape \(2, 5\) but the features \(B, L\) is"):
        AVER(AVERConfig.tiny()).forward_features(v.float(), a.float(), mask[:, :5])


@pytest.mark.parametrize("x_shape, mask, error, match", [
    ((5, 8), [True] * 5, TypeError, "mask must be a bool torch.Tensor"),
    ((5, 8), torch.ones(5), TypeError, "mask must be a bool tensor"),
    ((5, 8), torch.ones(4, dtype=torch.bool), ValueError, r"mask has shape \(1, 4\) but x \(B, L\) is \(1, 5\)"),
    ((2, 5, 8), torch.ones(5, 2, dtype=torch.bool), ValueError, r"mask has shape \(5, 2\) but x \(B, L\) is"),
])
def test_bad_masks_are_one_line_errors(x_shape, mask, error, match):
    with pytest.raises(error, match=match):
        TLAB(8)(torch.randn(x_shape), mask)
