import json

from aver_fast.cli import main


def test_demo_trains_and_writes_results(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "3", "--models", "aver,lf"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"aver", "lf"}
    for r in results.values():
        assert set(r["clean"]) == {"valence", "arousal", "mean"}
    assert "test CCC" in capsys.readouterr().out


def test_summary_and_backends_commands(capsys):
    assert main(["summary", "--preset", "tiny"]) == 0
    assert "trainable" in capsys.readouterr().out
    assert main(["backends"]) == 0
    assert "tlab_attention" in json.loads(capsys.readouterr().out)
