"""aver-fast predict: per-frame CSVs for one video, many videos (one progress bar, resumable, summary CSV), and a
live source played at real-time pace (--stream --realtime)."""
import csv
import json
import os
import shutil
import threading
import time

import pytest
import torch

from aver_fast.checkpoint import save_run
from aver_fast.cli import main
from aver_fast.data import make_synthetic
from aver_fast.models import AVER
from aver_fast.training import TrainConfig


def causal(step: int) -> list[str]:
    """predict's options for causal windows every ``step`` frames."""
    return ["--rule", "causal", "--step", str(step)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    make_synthetic(str(root / "data"), videos=3, seed=6, seconds=5.0, size=32)
    torch.manual_seed(0)
    cfg = TrainConfig(preset="tiny")
    prefix = str(root / "run" / "best")
    save_run(prefix, AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []}, epoch=1)
    return root, prefix


def test_a_folder_of_videos_is_resumable_with_a_summary(setup, tmp_path, capsys):
    root, ckpt = setup
    videos = tmp_path / "videos"
    shutil.copytree(root / "data" / "videos", videos)
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    assert main(["predict", str(videos), "--checkpoint", ckpt, "--out", str(out), *causal(4),
                 "--faces", "none"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == {"summary": str(out / "summary.csv"), "videos": 4, "done": 3, "skipped": 0, "failed": 1}
    rows = {r["video"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows[str(videos / "broken.mp4")]["status"].startswith("failed: ") and "broken.mp4" in \
        rows[str(videos / "broken.mp4")]["status"]
    done = rows[str(videos / "synth_000.mp4")]
    assert done["status"] == "done" and int(done["frames"]) == 150 and float(done["video_s_per_s"]) > 0
    lines = (out / "synth_000.csv").read_text().splitlines()
    assert lines[0] == "frame,time_s,valence,arousal" and len(lines) == 151
    stamp = os.path.getmtime(out / "synth_000.csv")
    os.remove(out / "synth_001.csv")  # as if interrupted there
    assert main(["predict", str(videos / "*.mp4"), "--checkpoint", ckpt, "--out", str(out), *causal(4),
                 "--faces", "none"]) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["done"], report["skipped"], report["failed"]) == (1, 2, 1)
    assert os.path.getmtime(out / "synth_000.csv") == stamp, "complete outputs are not redone"
    assert (out / "synth_001.csv").is_file() and not list(out.glob("*.tmp"))


def test_one_video_per_frame_with_titled_plots(setup, tmp_path, capsys, monkeypatch):
    root, ckpt = setup
    import aver_fast.plots as plots

    titles = []
    real = plots.plot
    monkeypatch.setattr(plots, "plot", lambda *a, **k: titles.append(k.get("title")) or real(*a, **k))
    video = str(root / "data" / "videos" / "synth_002.mp4")
    assert main(["predict", video, "--checkpoint", ckpt, "--out", str(tmp_path), "--labels",
                 str(root / "data" / "annotations" / "synth_002.txt"), "--rule", "causal"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 150 and report["backbone_subsequences"] == 150 - 15
    values = [tuple(r.split(",")[2:]) for r in (tmp_path / "synth_002.csv").read_text().splitlines()[1:]]
    assert len(set(values[127:])) == len(values[127:]), "step 1: every frame after the first window its own value"
    assert titles == ["aver (best) on synth_002"]
    assert (tmp_path / "synth_002_trace.png").stat().st_size > 1000


@pytest.mark.parametrize("rule", ["windows", "causal"])
def test_evaluate_and_predict_give_every_frame_the_same_value(setup, tmp_path, capsys, monkeypatch, rule):
    """Was: evaluate spread each step over its sub-sequence while predict used causal windows, so the same frame
    got two values. Now one rule (windows by default, causal asked for) in both commands: predict's CSV equals the
    frames evaluate scores, and so does the CCC computed from it."""
    import aver_fast.evaluation as E

    root, ckpt = setup
    scored = {}
    real_score = E.score
    monkeypatch.setattr(E, "score", lambda preds, *a, **k: scored.update(preds) or real_score(preds, *a, **k))
    rule_args = ["--rule", rule, "--precision", "fp32"] + (["--step", "4"] if rule == "causal" else [])
    # (fp32: bf16 autocast, auto's choice on some CPUs, is not the same in batches of other sizes)
    assert main(["evaluate", ckpt, "--data", str(root / "data"), "--videos", "synth_002", "--out",
                 str(tmp_path / "eval"), "--faces", "none", *rule_args]) == 0
    video = str(root / "data" / "videos" / "synth_002.mp4")
    assert main(["predict", video, "--checkpoint", ckpt, "--out", str(tmp_path / "pred"), "--faces", "none",
                 *rule_args]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    csv = torch.tensor([[float(x) for x in r.split(",")[2:]]
                        for r in (tmp_path / "pred" / "synth_002.csv").read_text().splitlines()[1:]])
    evaluated = scored["synth_002"]["frames"]
    assert csv.shape == evaluated.shape == (150, 2)
    torch.testing.assert_close(csv, evaluated, rtol=0, atol=2e-5)  # the CSV keeps 5 decimals
    if rule == "windows":  # windows at 0 and 128 (padded), 8 steps each; the padded steps past frame 160 (all
        # frames clamped to the last, silent audio) are one input, computed once
        assert report["backbone_subsequences"] == 16 - 5
    assert (csv[1:] != csv[:-1]).any()


def test_stream_a_file_at_real_time_pace(setup, tmp_path, capsys):
    _, ckpt = setup
    make_synthetic(str(tmp_path / "live"), videos=1, seed=7, seconds=8.0, size=32)
    video = str(tmp_path / "live" / "videos" / "synth_000.mp4")
    csv_path = tmp_path / "synth_000.csv"
    seen = []

    def watch():  # rows must appear while the source is still playing (the first window ends at 4.23 s)
        time.sleep(6.0)
        seen.append(len(csv_path.read_text().splitlines()) if csv_path.exists() else 0)
    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.perf_counter()
    assert main(["predict", video, "--checkpoint", ckpt, "--out", str(tmp_path), "--stream", "--realtime",
                 *causal(2)]) == 0
    wall = time.perf_counter() - t0
    watcher.join()
    report = json.loads(capsys.readouterr().out)
    assert wall >= 7.5, "played at its own pace (8 s of video)"
    assert report["frames"] == 240 and report["latency_p95_s"] < 2.0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "frame,time_s,valence,arousal,latency_s" and len(lines) == 241
    assert 128 < seen[0] < 241, "rows were written while the video played"


def test_bad_requests(setup, tmp_path, capsys):
    root, ckpt = setup
    assert main(["predict", str(tmp_path / "nothing*.mp4"), "--checkpoint", ckpt]) == 2
    assert "no such video" in capsys.readouterr().err
    video = str(root / "data" / "videos" / "synth_000.mp4")
    assert main(["predict", video, "--checkpoint", ckpt, *causal(3), "--out", str(tmp_path)]) == 2
    assert "step must divide the sub-sequence length 16" in capsys.readouterr().err
    assert main(["predict", video, "--checkpoint", ckpt, "--realtime"]) == 2
    assert "--realtime paces a --stream source" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.mp4"), "--checkpoint", ckpt, "--stream"]) == 2
    assert "missing.mp4" in capsys.readouterr().err


def test_own_video_with_a_face_is_cropped_tracked_and_masked(setup, tmp_path, capsys, monkeypatch):
    """A real face (scikit-image's astronaut) moving over a background, absent for 8 frames (bridged) and for the
    last 30 (masked: no prediction), through predict --faces detect; the track is cached beside the video."""
    import numpy as np

    from aver_fast.data import faces, write_video
    from tests.data._faces import composite

    _, ckpt = setup
    frames, truth = composite(frames=150, absent=((30, 38), (120, 150)))
    t = np.arange(int(5.0 * 16000)) / 16000
    path = str(tmp_path / "me.mp4")
    write_video(path, frames, 30.0, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "out"), *causal(4)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_without_face"] == 30
    rows = [r.split(",") for r in (tmp_path / "out" / "me.csv").read_text().splitlines()[1:]]
    missing = [i for i, r in enumerate(rows) if r[2] == "nan"]
    assert missing == list(range(120, 150)), "exactly the long gap has no prediction"
    assert (tmp_path / "me.faces.npz").is_file()
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "live"), *causal(4),
                 "--stream"]) == 0  # a live source: causal tracking, the face held 0.5 s, then masked
    capsys.readouterr()
    live = [r.split(",") for r in (tmp_path / "live" / "me.csv").read_text().splitlines()[1:]]
    assert len(live) == 150 and all(r[2] != "nan" for r in live[:120]) and all(r[2] == "nan" for r in live[138:])
    monkeypatch.setattr(faces, "detect_faces", lambda *_: pytest.fail("detected again"))
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "again"), *causal(4)]) == 0
    assert (tmp_path / "again" / "me.csv").read_text() == (tmp_path / "out" / "me.csv").read_text()


def _folder(root, tmp_path, names):
    """A folder of copies of the synthetic videos under the given names."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, name in enumerate(names):
        shutil.copy(root / "data" / "videos" / f"synth_00{i % 3}.mp4", videos / name)
    return videos


def _run(videos, ckpt, out, *extra):
    return main(["predict", str(videos), "--checkpoint", ckpt, "--out", str(out), *causal(4), "--faces", "none",
                 *extra])


def _statuses(out):
    return {os.path.basename(r["video"]): r["status"] for r in csv.DictReader(open(out / "summary.csv"))}


def test_a_partial_csv_is_redone_and_earlier_summary_rows_are_kept(setup, tmp_path, capsys):
    """Was: any existing CSV (a killed --stream's half) counted as complete; a resumed run dropped the summary's
    numbers for the videos it skipped."""
    root, ckpt = setup
    videos = _folder(root, tmp_path, ["a.mp4", "b.mp4"])
    out = tmp_path / "out"
    assert _run(videos, ckpt, out) == 0
    first = {r["video"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    whole = (out / "a.csv").read_text()
    (out / "a.csv").write_text("\n".join(whole.splitlines()[:40]) + "\n")  # as a kill -9 mid-write leaves it
    assert _run(videos, ckpt, out) == 0
    capsys.readouterr()
    assert _statuses(out) == {"a.mp4": "redone (its CSV was incomplete)", "b.mp4": "skipped (already complete)"}
    assert (out / "a.csv").read_text() == whole
    again = {r["video"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    b = str(videos / "b.mp4")
    assert again[b]["frames"] == first[b]["frames"] == "150" and again[b]["mean_valence"] == first[b]["mean_valence"]


def test_a_csv_made_otherwise_is_redone_never_kept(setup, tmp_path, capsys, monkeypatch):
    """Was: a rerun with another --step, --precision or checkpoint silently kept the old CSVs."""
    root, ckpt = setup
    videos = _folder(root, tmp_path, ["a.mp4"])
    out = tmp_path / "out"
    assert _run(videos, ckpt, out) == 0
    step4 = (out / "a.csv").read_text()
    assert _run(videos, ckpt, out, *causal(8)) == 0
    assert _statuses(out) == {"a.mp4": "redone (made with another step)"}
    assert (out / "a.csv").read_text() != step4
    other = str(tmp_path / "other" / "best")
    torch.manual_seed(1)
    cfg = TrainConfig(preset="tiny")
    save_run(other, AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []}, epoch=1)
    assert _run(videos, other, out, *causal(8)) == 0
    assert _statuses(out) == {"a.mp4": "redone (made with another checkpoint)"}
    shutil.copy(root / "data" / "videos" / "synth_001.mp4", videos / "a.mp4")  # another video, same name
    assert _run(videos, other, out, *causal(8)) == 0
    capsys.readouterr()
    assert _statuses(out) == {"a.mp4": "redone (made with another video_content)"}
    from aver_fast.data import media

    monkeypatch.setattr(media, "DECODING_VERSION", media.DECODING_VERSION + 1)  # a release that decodes otherwise
    assert _run(videos, other, out, *causal(8)) == 0
    capsys.readouterr()
    assert _statuses(out) == {"a.mp4": "redone (made with another decoding)"}


def test_a_video_named_summary_keeps_its_own_csv(setup, tmp_path, capsys):
    root, ckpt = setup
    videos = _folder(root, tmp_path, ["summary.mp4", "x.mp4"])
    out = tmp_path / "out"
    assert _run(videos, ckpt, out) == 0
    capsys.readouterr()
    assert set(_statuses(out)) == {"summary.mp4", "x.mp4"}
    assert (out / "summary.video.csv").read_text().startswith("frame,time_s,valence,arousal\n")


def test_one_bad_video_never_stops_the_batch(setup, tmp_path, capsys, monkeypatch):
    """Was: a file named 0$\\frac{$.mp4 made the plot raise (mathtext), exit 2, the others never done, no summary.
    The name is now plotted as text; any other unexpected error is recorded and the batch goes on."""
    root, ckpt = setup
    videos = _folder(root, tmp_path, ["0$\\frac{$.mp4", "b.mp4", "c.mp4"])
    import aver_fast.plots as plots

    real = plots.plot

    def flaky(pred, gt, fps, stem, title=None):
        if stem.endswith("c"):
            raise RuntimeError("an unexpected failure")
        return real(pred, gt, fps, stem, title)
    monkeypatch.setattr(plots, "plot", flaky)
    out = tmp_path / "out"
    assert _run(videos, ckpt, out) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["done"], report["failed"]) == (2, 1)
    statuses = _statuses(out)
    assert statuses["0$\\frac{$.mp4"] == "done" and statuses["b.mp4"] == "done"
    assert statuses["c.mp4"] == "failed: RuntimeError: an unexpected failure"


def test_a_cover_image_beside_videos_is_no_frame_folder(setup, tmp_path, capsys):
    """Was: two mp4s and cover.jpg made the folder a one-frame "video" of the cover (and predict DIR --out DIR
    twice did it through the plots)."""
    from PIL import Image

    root, ckpt = setup
    videos = _folder(root, tmp_path, ["a.mp4", "b.mp4"])
    Image.new("RGB", (32, 32)).save(videos / "cover.jpg")
    assert _run(videos, ckpt, videos) == 0
    assert _run(videos, ckpt, videos) == 0  # its own plots in the folder now
    capsys.readouterr()
    assert set(_statuses(videos)) == {"a.mp4", "b.mp4"}
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32)).save(frames / f"{i + 1:05d}.jpg")
    Image.new("RGB", (32, 32)).save(frames / "cover.jpg")
    assert _run(frames, ckpt, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "cover.jpg: is not a numbered frame" in err and len(err.strip().splitlines()) == 1


def test_a_users_own_csv_or_json_of_the_same_name_is_never_overwritten(setup, tmp_path, capsys):
    root, ckpt = setup
    videos = _folder(root, tmp_path, ["a.mp4", "b.mp4"])
    (videos / "a.csv").write_text("time,my,own,annotations\n0,1,2,3\n")
    (videos / "b.predict.json").write_text('{"camera": "mine"}')
    assert _run(videos, ckpt, videos) == 1  # outputs into the folder of the user's files
    capsys.readouterr()
    statuses = _statuses(videos)
    assert "a.csv: exists and was not written by aver-fast predict" in statuses["a.mp4"]
    assert "b.predict.json: exists and is not a predict record" in statuses["b.mp4"]
    assert (videos / "a.csv").read_text() == "time,my,own,annotations\n0,1,2,3\n"
    assert (videos / "b.predict.json").read_text() == '{"camera": "mine"}'


def test_torchrun_shares_the_videos_among_processes(setup, tmp_path):
    """Two gloo ranks: each video done once (the CSVs equal a single process's), one summary in the videos' order
    written by rank 0, and a rerun skips them all."""
    import subprocess
    import sys

    root, ckpt = setup
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    videos = str(root / "data" / "videos")
    opts = ["--checkpoint", ckpt, *causal(8), "--faces", "none"]

    def run(out, world):
        cmd = [sys.executable, "-m", "aver_fast", "predict", videos, "--out", str(out), *opts]
        if world > 1:
            cmd[1:3] = ["-m", "torch.distributed.run", "--nproc_per_node", str(world),
                        "--master_port", str(29600 + os.getpid() % 1000), "-m", "aver_fast"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=repo,
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo))
        assert res.returncode == 0, res.stderr[-3000:]
        return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert run(tmp_path / "one", 1)[-1]["done"] == 3
    reports = run(tmp_path / "two", 2)
    assert len(reports) == 1 and reports[0]["done"] == 3  # rank 0 alone reports
    rows = list(csv.DictReader(open(tmp_path / "two" / "summary.csv")))
    assert [r["video"] for r in rows] == sorted(os.path.join(videos, f) for f in os.listdir(videos))
    for name in ("synth_000", "synth_001", "synth_002"):
        assert (tmp_path / "two" / f"{name}.csv").read_text() == (tmp_path / "one" / f"{name}.csv").read_text()
    assert run(tmp_path / "two", 2)[0]["skipped"] == 3
