import numpy as np
import pytest

from aver_fast.data import Clip, parse_condition
from aver_fast.data.corruptions import (
    AdditiveNoise,
    Blur,
    DropFrames,
    Occlusion,
    pink_noise,
)


def clip(rng, n=16000, t=12):
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000)).astype(np.float32)
    frames = rng.integers(60, 200, size=(t, 24, 24, 3), dtype=np.uint8)
    return Clip(frames, audio, 16000, [rng.standard_normal(20000).astype(np.float32)])


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_additive_noise_hits_the_requested_snr(color, snr):
    rng = np.random.default_rng(0)
    c = clip(rng)
    out = AdditiveNoise(snr, color)(c, np.random.default_rng(1))
    noise = out.audio - c.audio
    measured = 10 * np.log10(np.mean(c.audio ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr) < 0.1


def test_pink_noise_has_a_falling_spectrum():
    p = np.abs(np.fft.rfft(pink_noise(2 ** 16, np.random.default_rng(0)))) ** 2
    assert p[100:1000].mean() > 5 * p[10000:20000].mean()


def test_each_preset_runs_is_seeded_and_changes_what_it_should():
    rng = np.random.default_rng(0)
    c = clip(rng)
    for name in ("white-10db", "pink-5db", "babble-5db", "bursts", "occlusion", "lighting", "blur", "drop-frames",
                 "dual"):
        cond = parse_condition(name)
        a, b = cond(c, np.random.default_rng(5)), cond(c, np.random.default_rng(5))
        assert np.array_equal(a.audio, b.audio) and np.array_equal(a.frames, b.frames), name
        audio_changed = not np.array_equal(a.audio, c.audio)
        video_changed = not np.array_equal(a.frames, c.frames)
        kinds = {type(t).__name__ for t in cond.transforms}
        assert audio_changed == bool(kinds & {"AdditiveNoise", "Babble", "Bursts"}) or name == "bursts", name
        assert video_changed == bool(kinds & {"Occlusion", "Lighting", "Blur", "DropFrames"}), name
    assert parse_condition("clean").transforms == []
    assert parse_condition("dual").params[0]["transform"] == "Babble"


def test_video_transforms():
    rng = np.random.default_rng(0)
    c = clip(rng, t=200)
    occ = Occlusion(fraction=0.5, size=0.4)(c, np.random.default_rng(1))
    changed = (occ.frames != c.frames).any(axis=(1, 2, 3)).mean()
    assert 0.35 < changed < 0.65
    dropped = DropFrames(0.3)(c, np.random.default_rng(1))
    repeats = (dropped.frames[1:] == dropped.frames[:-1]).all(axis=(1, 2, 3)).mean()
    assert 0.2 < repeats < 0.4
    blurred = Blur(2.0)(c, rng)
    assert np.abs(np.diff(blurred.frames.astype(float), axis=1)).mean() < \
        0.5 * np.abs(np.diff(c.frames.astype(float), axis=1)).mean()


def test_bad_specs():
    with pytest.raises(ValueError, match="unknown corruption 'rain'"):
        parse_condition("rain")
    with pytest.raises(ValueError, match="key=number"):
        parse_condition("white:snr_db=loud")
    with pytest.raises(ValueError, match="bad parameters for white"):
        parse_condition("white:volume=3")
    with pytest.raises(ValueError, match="babble needs"):
        parse_condition("babble-5db")(Clip(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(10, np.float32), 16000),
                                      np.random.default_rng(0))


@pytest.mark.parametrize("spec, message", [
    ("bursts:rate=1e7", r"rate must be in \[0, 20\]"), ("blur:sigma=0", r"sigma must be in \(0, 100\]"),
    ("blur:sigma=-1", "sigma must be in"), ("occlusion:fraction=-0.5", r"fraction must be in \[0, 1\]"),
    ("drop:fraction=2", "fraction must be in"), ("white:snr_db=nan", "snr_db must be in"),
    ("babble:voices=2.5", "voices must be a whole number"), ("occlusion:size=0", "size must be in"),
    ("lighting:contrast=-1", "contrast must be in"),
], ids=["burst-rate", "blur-zero", "blur-negative", "occlusion-negative", "drop-over-one", "snr-nan",
        "voices-fraction", "size-zero", "contrast-negative"])
def test_parameters_are_checked_when_the_condition_is_parsed(spec, message):
    """Was: bursts at 1e7/s hung, sigma 0 gave a NaN kernel, negative fractions were accepted."""
    with pytest.raises(ValueError, match=f"condition '{spec}': bad parameters for .*{message}"):
        parse_condition(spec)
