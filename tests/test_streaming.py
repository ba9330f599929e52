"""Frame-level prediction (aver_fast/streaming.py): the two rules, the same values from the dataset's windows
(evaluate) and from frames pushed in order (predict), sub-sequence features computed once, bounded memory,
identical results however the input is chunked."""
import dataclasses

import numpy as np
import pytest
import torch

from aver_fast.data import AffWild2Dataset, AlignmentConfig, make_synthetic
from aver_fast.data.media import iter_file
from aver_fast.models import AVER, AVERConfig
from aver_fast.streaming import FramePredictor, predict_file, predict_frames

CFG = AlignmentConfig.tiny()  # windows of 128 frames: 8 sub-sequences of 16


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("stream"))
    make_synthetic(root, videos=1, seed=4, seconds=9.0, size=32)  # 270 frames at 30 fps
    return root, f"{root}/videos/synth_000.mp4"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AVER(AVERConfig.tiny()).eval()


def test_step_equal_to_the_subsequence_reproduces_the_window_predictions(video, model):
    """Output frames 127, 143, ...: the window ending at 255 is the dataset's second window (start 128); frames
    before 127 take the first window's steps, exactly as predict_frames gives them."""
    root, path = video
    frames, predictor = predict_file(model, path, CFG, rule="causal", step=16, batch_size=3)
    ds = AffWild2Dataset(root, config=CFG)
    windows = next(iter(predict_frames(model, ds).values()))
    torch.testing.assert_close(frames[:128], windows["frames"][:128], rtol=1e-5, atol=1e-6)
    second = windows["steps"][1][0]  # (steps, 2) of the window starting at 128
    torch.testing.assert_close(frames[255], second[-1], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(frames).all() and frames.shape == (270, 2)
    assert predictor.backbone_calls == len(range(15, 270, 16))  # each sub-sequence once, whatever the overlap


def test_every_frame_has_its_own_window_at_step_1(video, model):
    _, path = video
    frames, predictor = predict_file(model, path, CFG, rule="causal", step=1)
    assert predictor.backbone_calls == 270 - 15  # one sub-sequence per frame from the first full one
    assert torch.isfinite(frames).all()
    after = frames[127:]
    assert (after[1:] != after[:-1]).any(dim=1).all(), "from the first full window on, each frame its own answer"
    coarse, _ = predict_file(model, path, CFG, rule="causal", step=16)
    torch.testing.assert_close(frames[127::16], coarse[127::16], rtol=1e-5, atol=1e-6)


def test_pushing_frame_by_frame_gives_the_same_rows(video, model):
    _, path = video
    fps, n, chunks = iter_file(path, CFG.sample_rate)
    whole, _ = predict_file(model, path, CFG, rule="causal", step=4)
    p = FramePredictor(model, CFG, fps, step=4, batch_size=1, rule="causal")
    rows, held = [], []
    for frames, audio in chunks:
        cut = np.linspace(0, len(audio), len(frames) + 1).astype(int)
        for i in range(len(frames)):  # one frame and its share of audio at a time, as a live source
            rows += p.push(frames[i:i + 1], audio[cut[i]:cut[i + 1]])
            held.append((len(p._frames), len(p._features)))
    rows += p.finish()
    assert [r.frame for r in rows] == list(range(n))
    got = torch.tensor([[r.valence, r.arousal] for r in rows])
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-6)
    assert all(r.latency_s >= 0 for r in rows)
    assert max(f for f, _ in held) <= CFG.subseq + 2, "frames held: about one sub-sequence"
    assert max(c for _, c in held) <= CFG.steps * CFG.subseq // 4 + 1, "features held: one window's worth"


@pytest.mark.parametrize("rule, step, resized", [("windows", None, 68), ("causal", 16, 68), ("causal", 8, 133),
                                                  ("causal", 1, 270)])
def test_only_the_frames_a_subsequence_samples_are_resized(video, model, monkeypatch, rule, step, resized):
    """A sub-sequence samples 4 of its 16 frames, ``end - 15, end - 10, end - 5, end``. Of the 270 frames, at step 16
    (ends 15, 31, ...) 16k + {0, 5, 10, 15} are resized, 67 of them, and frame 269, the last of the last chunk
    pushed, which sub-sequences past the end are clamped to; at step 8 (ends 15, 23, ...) 8k + {0, 2, 5, 7} but 2
    and 7; at step 1 all. The predictions are those of resizing every frame (the tests above)."""
    from aver_fast import streaming

    count = []
    resize = streaming.resize_frames
    monkeypatch.setattr(streaming, "resize_frames", lambda frames, cfg: count.append(len(frames)) or
                        resize(frames, cfg))
    frames, _ = predict_file(model, video[1], CFG, rule=rule, step=step)
    assert sum(count) == resized and torch.isfinite(frames).all()


def test_a_video_shorter_than_a_window_is_one_padded_window(tmp_path, model):
    make_synthetic(str(tmp_path), videos=1, seed=5, seconds=3.0, size=32)  # 90 frames < 128
    path = f"{tmp_path}/videos/synth_000.mp4"
    frames, _ = predict_file(model, path, CFG, rule="causal", step=2)
    windows = next(iter(predict_frames(model, AffWild2Dataset(str(tmp_path), config=CFG)).values()))
    torch.testing.assert_close(frames, windows["frames"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule, step", [("windows", None), ("causal", 16), ("causal", 4)])
def test_dataset_windows_and_pushed_frames_give_the_same_frames(video, model, rule, step):
    """One rule, two sources: evaluate's windows read through the dataset and predict's frames pushed in order give
    every frame the same prediction (270 frames: a padded last window under windows, frames after the last output
    frame under causal)."""
    root, path = video
    frames, _ = predict_file(model, path, CFG, rule=rule, step=step, batch_size=3)
    stride = CFG.window if rule == "windows" else step
    ds = AffWild2Dataset(root, config=dataclasses.replace(CFG, window_stride=stride))
    windows = next(iter(predict_frames(model, ds, rule=rule, step=step).values()))
    assert frames.shape == windows["frames"].shape == (270, 2) and torch.isfinite(frames).all()
    torch.testing.assert_close(frames, windows["frames"], rtol=1e-5, atol=1e-6)
    if rule == "windows":
        assert len(windows["steps"]) == 3  # windows at 0, 128 and 256 (padded)
        assert (frames[:128] != frames[128:256]).any()


def test_the_rule_and_its_windows_must_agree(video, model):
    root, _ = video
    with pytest.raises(ValueError, match=r"step=4 applies to rule 'causal' \(--rule causal\)"):
        FramePredictor(model, CFG, 30.0, step=4)
    with pytest.raises(ValueError, match="rule must be one of"):
        FramePredictor(model, CFG, 30.0, rule="centred")
    with pytest.raises(ValueError, match="the dataset's windows are 128 frames apart; rule 'causal' needs 4"):
        predict_frames(model, AffWild2Dataset(root, config=CFG), rule="causal", step=4)


def test_bad_settings_are_named(model):
    with pytest.raises(ValueError, match=r"step must divide the sub-sequence length 16 \(one of \[1, 2, 4, 8, 16\]\)"):
        FramePredictor(model, CFG, 30.0, step=5, rule="causal")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        FramePredictor(model, CFG, 30.0, batch_size=0)
    p = FramePredictor(model, CFG, 30.0)
    with pytest.raises(ValueError, match=r"frames must be uint8 \(k, H, W, 3\) RGB"):
        p.push(np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="no frames were pushed"):
        p.finish()


def test_large_frames_are_read_a_few_at_a_time_in_order(tmp_path, monkeypatch):
    """Was: 64 raw frames per read, converted to float32 at full resolution (3.6 GB at 1080p, tiny model), through
    decord's random-access reader (whose frame pools grew to ~2.5 GB). Now a read holds at most READ_BYTES of
    pixels, decoded in order, and the float copies are a few frames at a time."""
    from aver_fast.data import dataset as D
    from aver_fast.data import write_video
    from aver_fast.data.media import READ_BYTES, VideoSource

    ramp = (np.arange(1920)[None, :, None] * 255 // 1919).astype(np.uint8)  # smooth: quick to encode
    frames = np.stack([np.broadcast_to(np.roll(ramp, 40 * k, axis=1), (1080, 1920, 3)) for k in range(24)])
    path = str(tmp_path / "hd.mp4")
    write_video(path, iter(frames), 30.0, np.zeros(int(0.8 * 44100), np.float32))
    decoded = []
    monkeypatch.setattr(VideoSource, "frames", lambda _self, idx: decoded.append(len(idx)) or frames[idx])
    converted = []
    real = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda t: converted.append(t.numel()) or real(t))
    cfg = AlignmentConfig.tiny()
    fps, n, chunks = iter_file(path, cfg.sample_rate)
    got = list(chunks)
    assert n == 24 and decoded == [1], "one frame to size the reads; the rest decoded in order"
    assert all(f.nbytes <= READ_BYTES for f, _ in got) and sum(len(f) for f, _ in got) == 24
    D.resize_frames(got[0][0], cfg)
    assert converted and max(converted) * 4 <= READ_BYTES
    assert len(got) >= 3, "24 frames of 1080p take several reads"
