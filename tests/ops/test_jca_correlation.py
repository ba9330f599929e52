import pytest
import torch

import aver_fast


def test_matches_eq9_column_layout():
    """Batch-first output equals the paper's tanh(TLAB_aᵀ W_JA J / √d) in its (C, L) layout."""
    L, ca, cv = 16, 12, 20
    a, v = torch.randn(L, ca, dtype=torch.float64), torch.randn(L, cv, dtype=torch.float64)
    w = torch.randn(ca, ca + cv, dtype=torch.float64)
    J_cols = torch.cat([a, v], -1).T  # (d, L), the paper's layout
    expected = torch.tanh(a.T.T @ w @ J_cols / (ca + cv) ** 0.5)
    torch.testing.assert_close(aver_fast.jca_correlation(a, w, torch.cat([a, v], -1)), expected)


def test_batched():
    x, w, j = torch.randn(2, 3, 5, 6, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), \
        torch.randn(2, 3, 5, 4, dtype=torch.float64)
    out = aver_fast.jca_correlation(x, w, j, scale=0.1)
    assert out.shape == (2, 3, 5, 5)
    torch.testing.assert_close(out, torch.tanh(torch.einsum("bhlc,cd,bhmd->bhlm", x, w, j) * 0.1))


@pytest.mark.parametrize("args, match", [
    (lambda x, w, j: (x, w[:5], j), "w expects C=5"),
    (lambda x, w, j: (x, w, j[..., :3]), "j has D=3"),
    (lambda x, w, j: (x, w[None], j), "w must be a \\(C, D\\) matrix"),
    (lambda x, w, j: (x, w, j[:1]), "batch dims"),
    (lambda x, w, j: (x, w, j[:, :3]), "x has L=5 steps .* but j has L=3"),
    (lambda x, w, j: (x.int(), w, j), "x must be a floating-point"),
    (lambda x, w, j: (x, w.double(), j), "w has dtype"),
], ids=["w-rows", "j-cols", "w-3d", "batch", "steps", "x-int", "w-fp64"])
def test_bad_inputs_name_the_argument(args, match):
    x, w, j = torch.randn(2, 5, 6), torch.randn(6, 4), torch.randn(2, 5, 4)
    with pytest.raises((TypeError, ValueError), match=match):
        aver_fast.jca_correlation(*args(x, w, j))
