"""Inference over whole videos (aver_fast/inference.py): bounded work per forward pass, whatever the length."""
import pytest
import torch

from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic
from aver_fast.inference import predict_frames
from aver_fast.models import AVER, AVERConfig
from aver_fast.models.base import INFERENCE_CLIPS


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_frames_streams_batches_and_bounds_backbone_clips(tmp_path, batch_size):
    make_synthetic(str(tmp_path), videos=1, seed=2, seconds=8.0, size=32)
    ds = AffWild2Dataset(str(tmp_path), config=AlignmentConfig.tiny(window_stride=32))
    model = AVER(AVERConfig.tiny()).eval()
    batches, clips = [], []
    model.register_forward_pre_hook(lambda _module, args: batches.append(args[0].shape[0]))
    forward_map = model.video_backbone.forward_map

    def counting_forward_map(x):
        clips.append(x.shape[0])
        return forward_map(x)
    model.video_backbone.forward_map = counting_forward_map
    rec = next(iter(predict_frames(model, ds, batch_size).values()))
    assert len(ds) > 3 and sum(batches) == len(ds) and max(batches) == batch_size
    assert max(clips) <= INFERENCE_CLIPS and sum(clips) == len(ds) * AVERConfig.tiny().seq_len
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
