import json

from aver_fast.cli import main


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


def test_summary_and_backends_commands(capsys):
    assert main(["summary", "--preset", "tiny"]) == 0
    assert "trainable" in capsys.readouterr().out
    assert main(["backends"]) == 0
    assert "tlab_attention" in json.loads(capsys.readouterr().out)
