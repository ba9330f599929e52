import pytest
import torch

from aver_fast import AVER, AVERConfig, model_summary
from aver_fast.models import JCABaseline, LeaderFollower

PAPER_PARAMS = 26.97e6


def tiny_inputs(c, b=2):
    return (torch.randn(b, c.seq_len, 3, c.frames_per_clip, c.image_size, c.image_size),
            torch.randn(b, c.seq_len, 1, c.n_mels, c.audio_frames))


@pytest.mark.parametrize("cls", [AVER, JCABaseline, LeaderFollower], ids=lambda c: c.__name__)
@pytest.mark.parametrize("pool", ["none", "mean"])
def test_end_to_end_shapes_and_gradients(cls, pool):
    c = AVERConfig.tiny(pool=pool)
    m = cls(c)
    out = m(*tiny_inputs(c))
    assert out.shape == ((2, c.seq_len, 2) if pool == "none" else (2, 2))
    out.sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_forward_features_accepts_region_maps_and_pooled_features():
    c = AVERConfig.tiny()
    m = AVER(c).eval()
    video, audio = tiny_inputs(c)
    with torch.no_grad():
        regions, a = m.backbone_features(video, audio)
        assert regions.shape == (2, c.seq_len, 4, c.video_dim) and a.shape == (2, c.seq_len, c.audio_dim)
        torch.testing.assert_close(m(video, audio), m.forward_features(regions, a))
        assert m.forward_features(regions.mean(2), a).shape == (2, c.seq_len, 2)


def test_paper_preset_fusion_parameters_within_5_percent_of_paper():
    s = model_summary(AVER(AVERConfig.paper()))
    assert abs(s.fusion_trainable - PAPER_PARAMS) / PAPER_PARAMS < 0.05, s.fusion_trainable
    assert s.parts["video_backbone"][0] == 0 and s.parts["audio_backbone"][0] == 0  # frozen
    assert s.parts["tlab_audio"][0] == 7_880_192 and s.parts["avga"][0] == 838_193
    assert s.fusion_gflops > 0.5


def test_frozen_backbones_stay_in_eval_mode_and_get_no_gradient():
    c = AVERConfig.tiny(freeze_backbones=True)
    m = AVER(c).train()
    assert not m.video_backbone.training and not m.audio_backbone.training and m.tlab_audio.training
    m(*tiny_inputs(c)).sum().backward()
    assert all(p.grad is None for p in m.video_backbone.parameters())


@pytest.mark.parametrize("flag", ["use_tcn", "use_lstm", "use_attention"])
def test_ablation_flags_reach_both_tlabs(flag):
    m = AVER(AVERConfig.tiny(**{flag: False}))
    for tlab in (m.tlab_audio, m.tlab_video):
        assert getattr(tlab, flag) is False
    full = sum(p.numel() for p in AVER(AVERConfig.tiny()).parameters())
    assert sum(p.numel() for p in m.parameters()) < full


def test_bad_inputs_are_clear_errors():
    c = AVERConfig.tiny()
    m = AVER(c)
    video, audio = tiny_inputs(c)
    with pytest.raises(ValueError, match="video must be"):
        m(video[:, :, :1], audio)
    with pytest.raises(ValueError, match="differs from audio"):
        m(video, audio[:1])
    with pytest.raises(ValueError, match=f"seq_len={c.seq_len}"):
        m.forward_features(torch.randn(1, c.seq_len + 1, c.video_dim), torch.randn(1, c.seq_len + 1, c.audio_dim))
    with pytest.raises(ValueError, match="a_feat must be"):
        m.forward_features(torch.randn(1, c.seq_len, c.video_dim), torch.randn(1, c.seq_len, 3))
    with pytest.raises(ValueError, match="pool must be"):
        AVERConfig.tiny(pool="max")
    with pytest.raises(ValueError, match="unknown AVERConfig keys"):
        AVERConfig.from_dict({"seq_len": 4, "bogus": 1})


@pytest.mark.parametrize("case, error, match", [
    ("empty batch", ValueError, "batch is empty"),
    ("float64 video", TypeError, "video is torch.float64 but audio is torch.float32"),
    ("image size", ValueError, "video height H is 40 but the model's config expects 32"),
    ("mel bands", ValueError, "audio mel bands is 64 but the model's config expects 32"),
    ("audio frames", ValueError, "audio frames is 10 but the model's config expects 24"),
    ("clip frames", ValueError, "video frames per clip T is 3 but the model's config expects 4"),
])
@pytest.mark.parametrize("cls", [AVER, JCABaseline, LeaderFollower], ids=lambda c: c.__name__)
def test_inputs_are_checked_against_the_config(cls, case, error, match):
    c = AVERConfig.tiny()
    m = cls(c).eval()
    video, audio = tiny_inputs(c)
    if case == "empty batch":
        video, audio = video[:0], audio[:0]
    elif case == "float64 video":
        video = video.double()
    elif case == "image size":
        video = torch.randn(2, c.seq_len, 3, c.frames_per_clip, 40, 32)
    elif case == "mel bands":
        audio = torch.randn(2, c.seq_len, 1, 64, c.audio_frames)
    elif case == "audio frames":
        audio = torch.randn(2, c.seq_len, 1, c.n_mels, 10)
    elif case == "clip frames":
        video = torch.randn(2, c.seq_len, 3, 3, c.image_size, c.image_size)
    with pytest.raises(error, match=match):
        m(video, audio)


def test_feature_inputs_are_checked():
    c = AVERConfig.tiny()
    m = AVER(c).eval()
    v, a = torch.randn(2, c.seq_len, c.video_dim), torch.randn(2, c.seq_len, c.audio_dim)
    with pytest.raises(TypeError, match="v_feat is torch.float64 but a_feat is torch.float32"):
        m.forward_features(v.double(), a)
    with pytest.raises(ValueError, match="batch is empty"):
        m.forward_features(v[:0], a[:0])


def test_fusion_flops_are_counted_once_in_every_dtype():
    """The LSTMs' flops are counted analytically, once: float64 (unfused LSTM, visible to the flop counter) once
    counted them twice (1.58 G against 1.24 G)."""
    counts = {dt: model_summary(AVER(AVERConfig.paper()).to(dt)).fusion_gflops for dt in (torch.float32, torch.float64)}
    assert counts[torch.float32] == counts[torch.float64]
    assert abs(counts[torch.float32] - 1.2448) < 1e-3, counts
