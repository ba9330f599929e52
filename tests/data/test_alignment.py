import numpy as np
import pytest

from aver_fast.data import AlignmentConfig, plan_window, segment_bounds, window_starts


def test_paper_window_is_16_subsequences_of_32_frames_with_8_uniform_frames():
    cfg = AlignmentConfig()
    frames, ends, inside = plan_window(512, 2000, cfg)
    assert frames.shape == (16, 8) and cfg.steps == 16
    np.testing.assert_array_equal(ends, 512 + 32 * np.arange(1, 17) - 1)  # label = last frame of each step
    assert (frames[:, -1] == ends).all() and (frames[:, 0] == ends - 31).all()
    assert (np.diff(frames, axis=1) > 0).all() and inside.all()


def test_window_past_the_end_is_clamped_and_masked():
    cfg = AlignmentConfig()
    n = 600
    starts = window_starts(n, cfg)
    assert starts == [0, 512]
    frames, ends, inside = plan_window(512, n, cfg)
    assert frames.max() == n - 1
    np.testing.assert_array_equal(inside, ends < n)
    assert inside.sum() == (n - 512) // 32


def test_audio_segment_covers_the_subsequence_by_timestamp():
    cfg = AlignmentConfig()
    a, b = segment_bounds(31, fps=30.0, cfg=cfg)
    assert b == round(32 / 30 * 44100) and b - a == cfg.segment_samples
    a2, b2 = segment_bounds(31, fps=25.0, cfg=cfg)  # another frame rate moves the segment in time
    assert b2 == round(32 / 25 * 44100)


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of subseq"):
        AlignmentConfig(window=500)
    with pytest.raises(ValueError, match="frames_per_subseq"):
        AlignmentConfig(frames_per_subseq=40)
