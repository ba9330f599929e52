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
from aver_fast.config import TrainConfig
from aver_fast.data import make_synthetic
from aver_fast.models import AVER


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
    assert main(["predict", str(videos), "--checkpoint", ckpt, "--out", str(out), "--step", "4",
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
    assert main(["predict", str(videos / "*.mp4"), "--checkpoint", ckpt, "--out", str(out), "--step", "4",
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
                 str(root / "data" / "annotations" / "synth_002.txt")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 150 and report["backbone_subsequences"] == 150 - 15
    values = [tuple(r.split(",")[2:]) for r in (tmp_path / "synth_002.csv").read_text().splitlines()[1:]]
    assert len(set(values[127:])) == len(values[127:]), "step 1: every frame after the first window its own value"
    assert titles == ["aver (best) on synth_002"]
    assert (tmp_path / "synth_002_trace.png").stat().st_size > 1000


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
                 "--step", "2"]) == 0
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
    assert main(["predict", video, "--checkpoint", ckpt, "--step", "3", "--out", str(tmp_path)]) == 2
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
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "out"), "--step", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_without_face"] == 30
    rows = [r.split(",") for r in (tmp_path / "out" / "me.csv").read_text().splitlines()[1:]]
    missing = [i for i, r in enumerate(rows) if r[2] == "nan"]
    assert missing == list(range(120, 150)), "exactly the long gap has no prediction"
    assert (tmp_path / "me.faces.npz").is_file()
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "live"), "--step", "4",
                 "--stream"]) == 0  # a live source: causal tracking, the face held 0.5 s, then masked
    capsys.readouterr()
    live = [r.split(",") for r in (tmp_path / "live" / "me.csv").read_text().splitlines()[1:]]
    assert len(live) == 150 and all(r[2] != "nan" for r in live[:120]) and all(r[2] == "nan" for r in live[138:])
    monkeypatch.setattr(faces, "detect_faces", lambda *_: pytest.fail("detected again"))
    assert main(["predict", path, "--checkpoint", ckpt, "--out", str(tmp_path / "again"), "--step", "4"]) == 0
    assert (tmp_path / "again" / "me.csv").read_text() == (tmp_path / "out" / "me.csv").read_text()
