"""``aver-fast demo`` writes its data, results, checkpoints and plots; and AVER must actually learn: on the synthetic
benchmark (real files through the Aff-Wild2 loader) a shortened demo reaches a clean test mean CCC >= 0.5 (the full
`aver-fast demo` reaches ~0.89, see README)."""
import json

import pytest

from aver_fast.cli import main


@pytest.mark.slow
def test_aver_learns_on_the_synthetic_benchmark(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--models", "aver", "--steps", "120", "--videos", "8",
                 "--seconds", "15"]) == 0
    clean = json.loads((tmp_path / "results.json").read_text())["aver"]["clean"]
    assert clean["mean"] >= 0.5, clean


def test_demo_trains_on_synthetic_files_and_writes_results(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--steps", "3", "--batch-size", "4", "--videos", "5", "--seconds", "5",
            "--models", "aver,lf"]
    assert main(args) == 0
    assert (tmp_path / "data" / "videos" / "synth_000.mp4").is_file()
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"aver", "lf"}
    for r in results.values():
        assert set(r) == {"clean", "babble-5db", "occlusion", "dual"}
        assert set(r["clean"]) == {"valence", "arousal", "mean"}
    assert "test CCC" in capsys.readouterr().out
    assert (tmp_path / "checkpoints" / "aver" / "model.safetensors").is_file()
    assert len(list((tmp_path / "plots").glob("aver_*_trace.png"))) == 1
    assert main(["evaluate", str(tmp_path / "checkpoints" / "lf"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "eval")]) == 0  # demo checkpoints load like trained ones
    assert main(args) == 0  # a second run reuses the generated data
