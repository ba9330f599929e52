"""`pytest benchmarks -k predict`: end-to-end `predict` speed on the CPU at paper size (R(2+1)D-18 + ResNet18 + the
fusion, 16 x 8 frames at 112 px per 512-frame window), in video seconds per wall second and real-time factor (wall /
video duration), decoding the synthetic mp4 included: 0.1's path (one prediction per 32 frames, fp32, contiguous
weights, no_grad), and frame-level predict now (the default `--rule windows`, and `--rule causal` at `--step 32`,
`4` and `1`) in fp32, bf16 autocast (native-bfloat16 CPUs) and int8 (`aver-fast quantize`'s OpenVINO backbones,
calibrated on the synthetic videos). Each row names the engine and the machine (CPU, ISA caps). And the face stage
(detection, tracking, crops) in frames per second."""
import pytest
import torch

from aver_fast.bench import machine
from aver_fast.checkpoint import save_run
from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic
from aver_fast.inference import load_model
from aver_fast.models import AVER
from aver_fast.models.precision import cpu_has_native_bf16
from aver_fast.streaming import predict_file
from aver_fast.training import TrainConfig

SECONDS = 20.0  # 600 frames at 30 fps
MODES = ["0.1-fp32"] + [f"{p}-{how}" for how in ("windows", "step32", "step4", "step1")
                        for p in ("fp32", "bf16", "int8")]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """The benchmark's video, and a paper-size AVER (random weights, seed 0) in fp32 and quantized on it and a
    second synthetic video (held out)."""
    root = str(tmp_path_factory.mktemp("bench_predict"))
    make_synthetic(root, videos=2, seed=0, seconds=SECONDS, size=112)
    cfg = TrainConfig(preset="paper", faces="none")
    torch.manual_seed(0)
    save_run(f"{root}/run/best", AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []}, epoch=1)
    return root, f"{root}/videos/synth_000.mp4"


@pytest.fixture(scope="module")
def int8_checkpoint(video):
    pytest.importorskip("openvino", reason="int8 needs the aver-fast[int8] extra")
    from aver_fast.quantization import quantize_checkpoint

    root, _ = video
    report = quantize_checkpoint(f"{root}/run/best", root, f"{root}/run/int8", min_ccc=0.0)
    return f"{root}/run/int8", report


def _old_path(model, ds):
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            model(item["video"][None], item["audio"][None])


@pytest.mark.parametrize("mode", MODES)
def test_predict_video_seconds_per_second(benchmark, video, request, report_row, mode):
    root, path = video
    precision, _, how = mode.partition("-")
    if precision == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16 or AMX): predict would run fp32")
    checkpoint = request.getfixturevalue("int8_checkpoint")[0] if precision == "int8" else f"{root}/run/best"
    model, state = load_model(checkpoint, precision if precision != "0.1" else "fp32")
    if mode == "0.1-fp32":
        ds = AffWild2Dataset(root, ["synth_000"], config=AlignmentConfig())
        run = lambda: _old_path(model, ds)  # noqa: E731
    elif how == "windows":
        run = lambda: predict_file(model, path, AlignmentConfig(), None, 2, precision, "none")  # noqa: E731
    else:
        step = int(how.removeprefix("step"))
        run = lambda: predict_file(model, path, AlignmentConfig(), step, 2, precision, "none",  # noqa: E731
                                   rule="causal")
    benchmark.group = "predict: paper preset, CPU, a 20 s video"
    slow = how in ("step4", "step1")
    benchmark.pedantic(run, rounds=1 if slow else 3, iterations=1, warmup_rounds=0 if slow else 1)
    median = benchmark.stats.stats.median
    benchmark.extra_info |= {"video s per wall s": round(SECONDS / median, 2),
                             "real-time factor": round(median / SECONDS, 3),
                             "engine": "OpenVINO int8 backbones" if precision == "int8" else "PyTorch",
                             "machine": machine()}
    report_row("predict: paper preset, a 20 s video", mode=mode, **{k: benchmark.extra_info[k] for k in (
        "video s per wall s", "real-time factor", "engine")}, **{"median s": round(median, 3)})
    if how == "step32" and precision != "fp32":
        fp32 = predict_file(load_model(f"{root}/run/best")[0], path, AlignmentConfig(), 32, 2, "fp32", "none",
                            rule="causal")[0]
        low = predict_file(model, path, AlignmentConfig(), 32, 2, precision, "none", rule="causal")[0]
        benchmark.extra_info[f"max |{precision} - fp32|"] = round(float((low - fp32).abs().max()), 5)
    if precision == "int8":
        benchmark.extra_info["quantize report (held-out video)"] = request.getfixturevalue("int8_checkpoint")[1][
            "predictions"]


@pytest.mark.parametrize("size", [(240, 320), (480, 640)], ids=["320x240", "640x480"])
def test_face_stage_frames_per_second(benchmark, size):
    from aver_fast.data.faces import crop_faces, detect_faces, track_faces
    from tests.data._faces import composite

    frames, _ = composite(frames=60, height=size[0], width=size[1])

    def stage():
        return crop_faces(frames, track_faces(detect_faces(frames), 30.0))
    benchmark.group = "faces: detect + track + crop"
    benchmark.pedantic(stage, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["frames/s"] = round(len(frames) / benchmark.stats.stats.median, 1)


_PEAK = """import resource, sys
from aver_fast.cli import main
assert main(sys.argv[1:]) == 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"""


@pytest.mark.parametrize("size", [(112, 112), (1920, 1080)], ids=["112px", "1080p"])
def test_predict_peak_memory_by_resolution(benchmark, tmp_path, size):
    """Peak RSS of a whole `aver-fast predict` process (tiny preset, step 1, `--faces none`) on a 10 s video at
    112 px and at 1080p: memory follows the model's input size, not the video's resolution."""
    import subprocess
    import sys

    import numpy as np

    from aver_fast.data import VideoSource, load_audio, write_video

    make_synthetic(str(tmp_path / "src"), videos=1, seed=0, seconds=10.0, size=112)
    src = str(tmp_path / "src" / "videos" / "synth_000.mp4")
    video = str(tmp_path / "clip.mp4")
    if size == (112, 112):
        video = src
    else:
        import cv2

        source = VideoSource(src)
        frames = (cv2.resize(source.frames(np.array([i]))[0], size) for i in range(len(source)))
        write_video(video, frames, source.fps, load_audio(src).samples.numpy())
    cfg = TrainConfig(preset="tiny")
    torch.manual_seed(0)
    save_run(str(tmp_path / "run" / "best"), AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []},
             epoch=1)
    peak = {}

    def run():
        out = subprocess.run([sys.executable, "-c", _PEAK, "predict", video, "--checkpoint",
                              str(tmp_path / "run" / "best"), "--faces", "none", "--out", str(tmp_path / "out"),
                              "--force"], capture_output=True, text=True, check=True)
        peak["kb"] = int(out.stdout.strip().splitlines()[-1])
    benchmark.group = "predict: peak memory by resolution (tiny, step 1, 10 s)"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["peak RSS (MB)"] = round(peak["kb"] / 1024)
