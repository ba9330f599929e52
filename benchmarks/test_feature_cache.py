"""`pytest benchmarks -k feature_cache`: one training step of the AVER paper() preset (frozen backbones) from media
files vs from the cached backbone features (aver-fast extract-features): the per-epoch speed-up of the cache."""
import pytest
import torch

from aver_fast.data import make_synthetic
from aver_fast.metrics import CCCLoss
from aver_fast.models import AVER
from aver_fast.training import TrainConfig, build_datasets
from aver_fast.training.features import extract_features


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fc"))
    make_synthetic(root, videos=5, seed=0, seconds=18.0, size=112)
    cfg = TrainConfig(data=root, preset="paper")
    feats = str(tmp_path_factory.mktemp("fc_feats"))
    extract_features(root, feats, cfg.model_config(), cfg.alignment(), log=lambda *_: None)
    return root, feats


@pytest.mark.parametrize("source", ["media", "features"])
def test_feature_cache_training_step(benchmark, setup, source):
    root, feats = setup
    cfg = TrainConfig(data=root, preset="paper", features=feats if source == "features" else "")
    train_set, _, _ = build_datasets(cfg)
    model = AVER(cfg.model_config()).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = CCCLoss()
    benchmark.group = "AVER paper(): one training step, batch 2 (data loading included)"

    def step():
        items = [train_set[i] for i in range(2)]
        v = torch.stack([it["video"] for it in items])
        a = torch.stack([it["audio"] for it in items])
        pred = model.forward_features(v, a) if source == "features" else model(v, a)
        loss = loss_fn(pred, torch.stack([it["target"] for it in items]), torch.stack([it["mask"] for it in items]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
