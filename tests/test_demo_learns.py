"""AVER must actually learn: on the synthetic benchmark (real files through the Aff-Wild2 loader) a shortened demo
reaches a clean test mean CCC >= 0.5 (the full `aver-fast demo` reaches ~0.89, see README)."""
import json

import pytest

from aver_fast.cli import main


@pytest.mark.slow
def test_aver_learns_on_the_synthetic_benchmark(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--models", "aver", "--steps", "120", "--videos", "8",
                 "--seconds", "15"]) == 0
    clean = json.loads((tmp_path / "results.json").read_text())["aver"]["clean"]
    assert clean["mean"] >= 0.5, clean
