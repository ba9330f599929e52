import pytest
import torch
import torchvision

from aver_fast.nn import AVGA, AudioResNet18, R2Plus1D18


def _same_layout(ours, theirs):
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)


def test_r2plus1d_state_dict_matches_torchvision_and_loads_its_weights(tmp_path):
    tv = torchvision.models.video.r2plus1d_18(num_classes=400).eval()
    ours = R2Plus1D18(num_classes=400).eval()
    _same_layout(ours, tv)
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(tv.state_dict(), path)
    ours.load_torchvision_weights(path)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x), rtol=1e-4, atol=1e-4)
    headless = R2Plus1D18()  # no classifier: the fc keys of the file are dropped
    headless.load_torchvision_weights(path)
    with torch.no_grad():
        assert headless.eval().forward_map(x).shape == (1, 512, 1, 4, 4)


def test_audio_resnet_layout_matches_torchvision_resnet18():
    tv = torchvision.models.resnet18(num_classes=10)
    tv.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    _same_layout(AudioResNet18(num_classes=10), tv)
    assert AudioResNet18()(torch.randn(2, 1, 128, 104)).shape == (2, 512)


def test_weights_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        R2Plus1D18().load_torchvision_weights(tmp_path / "nope.pth")
    torch.save(AudioResNet18().state_dict(), tmp_path / "audio.pth")
    with pytest.raises(ValueError, match="does not match R2Plus1D18"):
        R2Plus1D18().load_torchvision_weights(tmp_path / "audio.pth")


def test_avga_attends_over_regions_guided_by_audio():
    m = AVGA(16, 8, hidden=12, attn_dim=5)
    regions, audio = torch.randn(2, 3, 7, 16), torch.randn(2, 3, 8)
    out = m(regions, audio)
    assert out.shape == (2, 3, 16)
    out2 = m(regions, audio + torch.randn_like(audio))
    assert not torch.allclose(out, out2), "the audio feature changes the pooling"
    assert sum(p.numel() for p in AVGA().parameters()) == 838_193
    with pytest.raises(ValueError, match="audio must be"):
        m(regions, torch.randn(2, 8))


def test_avga_audio_by_region_is_the_public_indexing():
    """audio_by_region: audio value j is added to every entry of region j's vector (the public code's
    ``affine_g(a).unsqueeze(2)``), not value j to entry j of every region."""
    m = AVGA(16, 8, hidden=12, attn_dim=5, audio_by_region=True).double()
    regions, audio = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    v = torch.relu(m.affine_video(regions))
    g = m.affine_g(torch.relu(m.affine_audio(audio)))  # (2, 5)
    z = (torch.tanh(m.affine_v(v) + g[:, :, None]) @ m.affine_h.weight.T)[..., 0]
    expected = m.out((torch.softmax(z, -1)[:, :, None] * regions).sum(1))
    torch.testing.assert_close(m(regions, audio), expected)
    paper = AVGA(16, 8, hidden=12, attn_dim=5).double()
    paper.load_state_dict(m.state_dict())
    assert not torch.allclose(paper(regions, audio), expected)
    with pytest.raises(ValueError, match="must have attn_dim=5 regions, got 7"):
        m(torch.randn(2, 7, 16, dtype=torch.float64), audio)


def test_video_backbone_gradients_are_right_under_cpu_bf16_autocast():
    """oneDNN's bf16 Conv3d weight gradient is garbage (1e22, inf, NaN) for depth-2 inputs on AVX512-BF16 CPUs; the
    backbone's convolutions compute gradients in float32 under CPU autocast, so they match float32 training."""
    from aver_fast.nn.r2plus1d import Conv3d

    torch.manual_seed(0)
    conv = Conv3d(28, 16, (3, 1, 1), 1, (1, 0, 0), bias=False)
    x = torch.randn(16, 28, 2, 8, 8).bfloat16().float()
    g = torch.randn(16, 16, 2, 8, 8)
    conv(x).backward(g)
    want = conv.weight.grad.clone()
    for _ in range(5):  # the oneDNN failure varies from run to run
        conv.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        assert y.dtype == torch.bfloat16
        y.backward(g.bfloat16())
        torch.testing.assert_close(conv.weight.grad, want, rtol=0.02, atol=0.5)
    with torch.no_grad():
        full = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = conv(x)
    assert half.dtype == torch.bfloat16  # inference keeps bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.02, atol=0.1)
