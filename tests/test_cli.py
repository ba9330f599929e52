"""The command line (aver_fast/cli.py): one dispatch table, one error path."""
import json

import pytest

from aver_fast.cli import main


def test_summary_and_backends_commands(capsys):
    assert main(["summary", "--preset", "tiny"]) == 0
    assert "trainable" in capsys.readouterr().out
    assert main(["backends", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["op", "device", "selected", "triton", "cpp", "sdpa", "reference"]
    for op, devices in report.items():  # one row per (op, device), naming the same choice as the JSON
        for dev, r in devices.items():
            assert any(line.split()[:3] == [op, dev, r["selected"]] for line in lines[2:]), (op, dev)


def test_every_command_reports_expected_failures_in_one_line(tmp_path, capsys):
    """Bad input exits 2 with "aver-fast COMMAND: problem" (no traceback), whichever command meets it."""
    cases = {"demo": ["--models", "aver,transformer"],
             "evaluate": [str(tmp_path / "nope"), "--data", str(tmp_path)],
             "predict": [str(tmp_path / "missing.mp4"), "--checkpoint", str(tmp_path / "nope")],
             "corrupt": [str(tmp_path), str(tmp_path / "out"), "--condition", "hail"],
             "train": ["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]}
    for command, args in cases.items():
        assert main([command, *args]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"aver-fast {command}: "), (command, err)


def test_errors_with_an_exit_code_keep_it(monkeypatch, capsys):
    from aver_fast import cli

    class Diverged(RuntimeError):
        exit_code = 3

    def fail(_args):
        raise Diverged("training diverged at epoch 1")
    monkeypatch.setattr(cli.COMMANDS["summary"], "run", fail)
    assert main(["summary"]) == 3
    assert capsys.readouterr().err.strip() == "aver-fast summary: training diverged at epoch 1"

    def bug(_args):
        raise RuntimeError("a bug")
    monkeypatch.setattr(cli.COMMANDS["summary"], "run", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # an unexpected error keeps its traceback
        main(["summary"])


def test_every_command_is_in_the_dispatch_table_with_its_options():
    from aver_fast.cli import COMMANDS, build_parser

    assert {"demo", "train", "evaluate", "predict", "extract-features", "make-synthetic", "corrupt", "bench", "summary",
            "backends", "check-gpu-build", "export", "quantize"} == set(COMMANDS)
    args = build_parser().parse_args(["evaluate", "run/best", "--data", "d", "--smoothing-edges", "mirror"])
    assert args.smoothing_edges == "mirror" and args.batch_size == 2
    assert build_parser().parse_args(["evaluate", "run/best", "--data", "d"]).smoothing_edges == "constant"


def test_importing_every_module_runs_no_command():
    """Walking the package (as tools and check-install do) imports aver_fast.__main__ and aver_fast.cli: neither
    may parse sys.argv or exit."""
    import importlib
    import pkgutil

    import aver_fast

    for m in pkgutil.walk_packages(aver_fast.__path__, "aver_fast."):
        importlib.import_module(m.name)
