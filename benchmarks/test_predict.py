"""`pytest benchmarks -k predict`: end-to-end `predict` speed on the CPU at paper size (R(2+1)D-18 + ResNet18 + the
fusion, 16 x 8 frames at 112 px per 512-frame window), in video seconds per wall second: 0.1's path (fp32,
contiguous weights, no_grad), fp32 now (channels-last 3-D, inference_mode) and bf16 autocast (native bfloat16
CPUs only). Decoding the synthetic mp4 is included, as a user meets it."""
import pytest
import torch

from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic
from aver_fast.inference import cpu_has_native_bf16, predict_frames
from aver_fast.models import AVER, AVERConfig

SECONDS = 20.0  # two paper windows at 30 fps


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench_predict"))
    make_synthetic(root, videos=1, seed=0, seconds=SECONDS, size=112)
    return AffWild2Dataset(root, config=AlignmentConfig())


def _old_path(model, ds):
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            model(item["video"][None], item["audio"][None])


@pytest.mark.parametrize("mode", ["0.1-fp32", "fp32", "bf16"])
def test_predict_video_seconds_per_second(benchmark, dataset, mode):
    if mode == "bf16" and not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16 or AMX): predict would run fp32")
    torch.manual_seed(0)
    model = AVER(AVERConfig.paper()).eval()
    if mode == "0.1-fp32":
        run = lambda: _old_path(model, dataset)  # noqa: E731
    else:
        run = lambda: predict_frames(model, dataset, batch_size=1, precision=mode)  # noqa: E731
    benchmark.group = "predict: paper preset, CPU, whole video"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    seconds = dataset.entries[0].frames / dataset.entries[0].fps
    benchmark.extra_info["video s per wall s"] = round(seconds / benchmark.stats.stats.median, 2)
    benchmark.extra_info["threads"] = torch.get_num_threads()
    if mode == "bf16":
        fp32 = next(iter(predict_frames(model, dataset, batch_size=1).values()))["frames"]
        bf16 = next(iter(predict_frames(model, dataset, batch_size=1, precision="bf16").values()))["frames"]
        benchmark.extra_info["max |bf16 - fp32|"] = float((bf16 - fp32).abs().max())
