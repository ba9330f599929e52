"""Predictions over whole videos from the dataset's windows (aver_fast/streaming.py, predict_frames): bounded work
per forward pass, whatever the length."""
import re

import pytest
import torch

from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic
from aver_fast.models import AVER, AVERConfig
from aver_fast.models.base import INFERENCE_CLIPS
from aver_fast.streaming import predict_frames


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_frames_streams_batches_and_bounds_backbone_clips(tmp_path, batch_size):
    make_synthetic(str(tmp_path), videos=1, seed=2, seconds=8.0, size=32)
    ds = AffWild2Dataset(str(tmp_path), config=AlignmentConfig.tiny(window_stride=16))
    model = AVER(AVERConfig.tiny()).eval()
    batches, clips = [], []
    model.register_forward_pre_hook(lambda _module, args: batches.append(args[0].shape[0]))
    forward_map = model.video_backbone.forward_map

    def counting_forward_map(x):
        clips.append(x.shape[0])
        return forward_map(x)
    model.video_backbone.forward_map = counting_forward_map
    rec = next(iter(predict_frames(model, ds, batch_size, rule="causal", step=16).values()))
    n = ds.entries[0].frames
    ran = [s for _, s in ds.index if s == 0 or s + ds.config.window <= n]  # causal: none past the end (but the first)
    assert len(ran) > 3 and sum(batches) == len(ran) and max(batches) == batch_size
    assert max(clips) <= INFERENCE_CLIPS and sum(clips) == len(ran) * AVERConfig.tiny().seq_len
    assert torch.isfinite(rec["frames"]).all()
    with torch.no_grad():  # chunking the clips changes nothing
        item = ds[0]
        v, a = item["video"][None], item["audio"][None]
        regions, feats = model.backbone_features(v, a)
        with torch.enable_grad():
            regions_grad, _ = model.backbone_features(v, a)
    torch.testing.assert_close(regions, regions_grad.detach())
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        predict_frames(model, ds, 0)


def test_precision_bf16_is_close_to_fp32_and_falls_back_without_native_bf16(tmp_path, monkeypatch):
    from aver_fast.models import precision as inference

    make_synthetic(str(tmp_path), videos=1, seed=3, seconds=6.0, size=32)
    ds = AffWild2Dataset(str(tmp_path), config=AlignmentConfig.tiny())
    torch.manual_seed(0)
    model = AVER(AVERConfig.tiny()).eval()
    layouts = []
    model.register_forward_pre_hook(lambda m, _: layouts.append(
        m.video_backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)))
    fp32 = next(iter(predict_frames(model, ds).values()))["frames"]
    assert layouts and all(layouts), "the CPU layout while predicting"
    assert model.video_backbone.stem[0].weight.is_contiguous(), "was: the caller's model kept the converted layout"
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: True)
    bf16 = next(iter(predict_frames(model, ds, precision="bf16").values()))["frames"]
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32), "bf16 ran"
    assert (bf16 - fp32).abs().max() < 0.05  # bf16 keeps ~3 digits; predictions lie in [-1, 1]
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16 .* running in fp32"):
        fallback = next(iter(predict_frames(model, ds, precision="bf16").values()))["frames"]
    torch.testing.assert_close(fallback, fp32, rtol=0, atol=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        predict_frames(model, ds, precision="fp16")
    # the weights stay usable for training after inference mode
    video, audio = ds[0]["video"][None], ds[0]["audio"][None]
    model.train()
    model(video, audio).sum().backward()


def _craft(prefix: str, change) -> None:
    """Rewrite the checkpoint's meta.json with ``change(state)`` and re-sign it (as an attacker or a bug would):
    the checksums match, so only validation of what it says can stop it."""
    import hashlib
    import json
    import os

    from aver_fast.checkpoint import MANIFEST

    directory = os.path.realpath(prefix)
    meta_path = os.path.join(directory, "meta.json")
    meta = json.load(open(meta_path))
    change(meta["state"])
    data = json.dumps(meta).encode()
    open(meta_path, "wb").write(data)
    manifest = json.load(open(os.path.join(directory, MANIFEST)))
    manifest["files"]["meta.json"] = hashlib.sha256(data).hexdigest()
    manifest["sizes"]["meta.json"] = len(data)
    json.dump(manifest, open(os.path.join(directory, MANIFEST), "w"))


@pytest.fixture
def tiny_prefix(tmp_path):
    from aver_fast.checkpoint import save_run
    from aver_fast.training import TrainConfig

    cfg = TrainConfig(preset="tiny")
    prefix = str(tmp_path / "run" / "best")
    save_run(prefix, AVER(cfg.model_config()), cfg, {"train": [], "val": [], "test": []}, epoch=1)
    return prefix


def test_a_crafted_architecture_is_refused_before_anything_is_allocated(tiny_prefix):
    """blstm_hidden = 30000 once built a 14 GB model before the weights were compared: now the shapes are compared
    on the meta device first."""
    import tracemalloc

    from aver_fast.checkpoint import CheckpointError
    from aver_fast.inference import load_model

    _craft(tiny_prefix, lambda s: s["arch"][1].update(blstm_hidden=30000))
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=r"weights do not fit the architecture it records \(.* is \("):
        load_model(tiny_prefix)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 << 20, f"{peak / 2**20:.0f} MB allocated while refusing"


@pytest.mark.parametrize("change, message", [
    (lambda s: s["config"].update(colour="blue"), r"config: unknown config keys \['colour'\]"),
    (lambda s: s["config"].update(epochs=[1, 2]), r"config: epochs takes an integer, got \[1, 2\]"),
    (lambda s: s.update(config=[1]), "config: a run's config must be a table"),
    (lambda s: s["arch"][1].update(seq_len=[8]), "does not describe a model of this version"),
], ids=["unknown-key", "list-value", "not-a-table", "arch-list"])
def test_a_crafted_meta_json_is_one_line(tiny_prefix, tmp_path, capsys, change, message):
    from aver_fast.cli import main

    make_synthetic(str(tmp_path / "d"), videos=1, seed=0, seconds=2.0, size=32)
    _craft(tiny_prefix, change)
    code = main(["predict", str(tmp_path / "d" / "videos" / "synth_000.mp4"), "--checkpoint", tiny_prefix,
                 "--out", str(tmp_path / "p"), "--faces", "none"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err) and tiny_prefix in err
