"""`pytest benchmarks -k data`: windows per second from disk (synthetic media files, the paper's and the tiny
alignment), one process and through a DataLoader with 2 workers."""
import pytest
from torch.utils.data import DataLoader

from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bench_data"))
    make_synthetic(root, videos=2, seed=0, seconds=40.0, size=112)
    return root


@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_data_windows_per_second_single_process(benchmark, root, preset):
    cfg = AlignmentConfig() if preset == "paper" else AlignmentConfig.tiny()
    ds = AffWild2Dataset(root, config=cfg)
    benchmark.group = "data: one window from disk"
    i = iter(range(10 ** 9))
    benchmark.pedantic(lambda: ds[next(i) % len(ds)], rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["windows/s"] = round(1 / benchmark.stats.stats.median, 1)


def test_data_windows_per_second_two_workers(benchmark, root):
    ds = AffWild2Dataset(root, config=AlignmentConfig(window_stride=128))
    benchmark.group = "data: paper windows through a DataLoader (2 workers, batch 4)"

    def epoch():
        n = 0
        for batch in DataLoader(ds, batch_size=4, num_workers=2, timeout=300):
            n += batch["video"].shape[0]
        return n
    n = benchmark.pedantic(epoch, rounds=1, iterations=1)
    benchmark.extra_info["windows/s"] = round(n / benchmark.stats.stats.median, 1)
