"""`aver-fast evaluate`'s post-processing: the moving average equals scipy.ndimage.uniform_filter1d in each edge mode
(the public evaluation uses mode='constant'), and the report names the mode."""
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter1d

from aver_fast.evaluation import PUBLIC_SMOOTHING_EDGES, SMOOTHING_EDGES, markdown, moving_average


@pytest.mark.parametrize("edges", SMOOTHING_EDGES)
@pytest.mark.parametrize("size", [1, 2, 7, 20, 50])
@pytest.mark.parametrize("n", [1, 3, 10, 60, 200])
def test_moving_average_equals_scipy(edges, size, n):
    x = np.random.default_rng(n * 100 + size).standard_normal(n)
    ours = moving_average(torch.from_numpy(x), size, edges).numpy()
    np.testing.assert_allclose(ours, uniform_filter1d(x, size, mode=edges), rtol=1e-12, atol=1e-12)


def test_the_default_is_the_public_protocol_and_bad_modes_are_named():
    assert PUBLIC_SMOOTHING_EDGES == "constant"
    with pytest.raises(ValueError, match="smoothing edges must be one of"):
        moving_average(torch.zeros(5), 3, "symmetric")


def test_the_report_names_the_edge_mode():
    r = {"valence": 0.5, "arousal": 0.4, "mean": 0.45}
    results = {"run/best": {"clean": {"raw": r, "post": r, "smoothing_edges": "mirror", "params": []}}}
    assert "with 'mirror' edges" in markdown(results)
    json.dumps(results)


@pytest.mark.parametrize("conditions, message", [("", "no conditions to evaluate"),
                                                 ("clean,blur:sigma=0", r"sigma must be in \(0, 100\]"),
                                                 ("clean,bursts:rate=1e7", r"rate must be in \[0, 20\]")])
def test_conditions_are_checked_before_any_work(tmp_path, capsys, conditions, message):
    """Was: --conditions "" exited 0 with an empty report; sigma=0 gave NaN and rate=1e7 hung, after the model
    had run on the earlier conditions. Now every condition is parsed before the checkpoint is even read."""
    import re

    from aver_fast.cli import main

    code = main(["evaluate", str(tmp_path / "nothing"), "--data", str(tmp_path), "--conditions", conditions,
                 "--out", str(tmp_path / "eval")])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "eval").exists()
