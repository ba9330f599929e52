import pytest
import torch

from aver_fast import CCCLoss, ccc


def test_identical_is_one_and_negated_is_minus_one():
    x = torch.randn(4, 100, dtype=torch.float64) + 3.0
    torch.testing.assert_close(ccc(x, x), torch.ones(4, dtype=torch.float64))
    x = x - x.mean(dim=-1, keepdim=True)  # negation keeps the mean only when it is zero
    torch.testing.assert_close(ccc(-x, x), -torch.ones(4, dtype=torch.float64))


def test_matches_eq15_population_statistics():
    x, y = torch.randn(200, dtype=torch.float64), torch.randn(200, dtype=torch.float64) * 0.5 + 0.3
    sxy = ((x - x.mean()) * (y - y.mean())).mean()
    expected = 2 * sxy / (x.var(unbiased=False) + y.var(unbiased=False) + (x.mean() - y.mean()) ** 2)
    torch.testing.assert_close(ccc(x, y), expected)


def test_shift_and_scale_are_penalised_unlike_pearson():
    y = torch.randn(500, dtype=torch.float64)
    y = (y - y.mean()) / y.std(unbiased=False)  # exactly zero mean, unit variance
    torch.testing.assert_close(ccc(y + 1.0, y), torch.tensor(2 / 3, dtype=torch.float64))  # 2 / (1 + 1 + 1)
    torch.testing.assert_close(ccc(3 * y, y), torch.tensor(0.6, dtype=torch.float64))  # 2*3 / (9 + 1)
    pearson = torch.corrcoef(torch.stack([3 * y + 1.0, y]))[0, 1]
    assert pearson > 0.999 and ccc(3 * y + 1.0, y) < 0.6


def test_masks_and_invalid_labels_are_excluded():
    y = torch.randn(100, dtype=torch.float64)
    p = y.clone()
    p[50:] = torch.randn(50, dtype=torch.float64) * 10  # garbage predictions on the second half
    mask = torch.arange(100) < 50
    torch.testing.assert_close(ccc(p, y, mask), torch.tensor(1.0, dtype=torch.float64))
    y2 = y.clone()
    y2[50:] = -5.0  # Aff-Wild2's invalid marker
    torch.testing.assert_close(ccc(p, y2), torch.tensor(1.0, dtype=torch.float64))
    assert ccc(p, y2, ignore_value=None) < 0.5
    assert torch.isnan(ccc(p, torch.full_like(y, -5.0)))


def test_dim_argument():
    x = torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(ccc(x, x, dim=0), torch.ones(3, dtype=torch.float64))


def test_loss_is_one_minus_mean_ccc_and_differentiable():
    pred = torch.randn(4, 16, 2, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 16, 2, dtype=torch.float64)
    loss = CCCLoss()(pred, target)
    cv = ccc(pred[..., 0].flatten(), target[..., 0].flatten())
    ca = ccc(pred[..., 1].flatten(), target[..., 1].flatten())
    torch.testing.assert_close(loss, 1 - (cv + ca) / 2)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda p: CCCLoss()(p, target), (pred,))


def test_loss_with_step_mask_and_all_invalid():
    pred = torch.randn(2, 8, 2, requires_grad=True)
    target = torch.randn(2, 8, 2)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 4:] = False
    expected = CCCLoss()(pred[:, :4], target[:, :4])
    torch.testing.assert_close(CCCLoss()(pred, target, mask), expected)
    loss = CCCLoss()(pred, torch.full_like(target, -5.0))
    loss.backward()
    assert loss.item() == 1.0 and torch.isfinite(pred.grad).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="pred shape"):
        ccc(torch.randn(3), torch.randn(4))
    with pytest.raises(TypeError, match="mask must be a bool"):
        ccc(torch.randn(3), torch.randn(3), torch.ones(3))
    with pytest.raises(ValueError, match="pred must be \\(..., 2\\)"):
        CCCLoss()(torch.randn(4, 3), torch.randn(4, 3))


@pytest.mark.parametrize("where", ["pred", "target"])
def test_non_finite_input_gives_nan_never_a_finite_looking_value(where):
    """A diverged model (NaN predictions) must not read as CCC 0 / loss 1: training then stops on the NaN."""
    pred, target = torch.randn(2, 8, 2), torch.randn(2, 8, 2)
    (pred if where == "pred" else target)[1, 3, 0] = float("nan")
    assert torch.isnan(ccc(pred[..., 0].flatten(), target[..., 0].flatten()))
    assert torch.isfinite(ccc(pred[..., 1].flatten(), target[..., 1].flatten()))
    assert torch.isnan(CCCLoss()(pred, target))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 3] = False  # a masked frame's value is never read
    assert torch.isfinite(CCCLoss()(pred, target, mask))
