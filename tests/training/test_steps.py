"""training/steps.py hands the batch's padding mask to the model."""
import torch

from aver_fast.models import AVER, AVERConfig
from aver_fast.training.steps import forward


def test_forward_passes_the_steps_mask():
    torch.manual_seed(0)
    cfg = AVERConfig.tiny()
    model = AVER(cfg).eval()
    video = torch.randn(2, cfg.seq_len, 3, cfg.frames_per_clip, cfg.image_size, cfg.image_size)
    audio = torch.randn(2, cfg.seq_len, 1, cfg.n_mels, cfg.audio_frames)
    steps = torch.arange(cfg.seq_len)[None, :] < torch.tensor([[cfg.seq_len], [3]])
    with torch.no_grad():
        pred = forward(model, {"video": video, "audio": audio, "steps": steps}, torch.device("cpu"))
        assert (pred[1, 3:] == 0).all()  # the padded steps predict nothing
        torch.testing.assert_close(pred, model(video, audio, mask=steps))
        assert not torch.allclose(pred[1, :3], model(video, audio)[1, :3])  # the padded steps were left out
