"""Controlled noise (the paper's "modified dataset with controlled noise"): seeded, composable transforms of a
clip's frames and audio, and named conditions built from them.

A transform is ``t(clip, rng) -> clip`` on a :class:`Clip` (uint8 frames ``(T, H, W, 3)``, mono float32 audio at
``sample_rate``); ``rng`` is a ``numpy.random.Generator``, so the same seed gives the same corruption.
Conditions: ``parse_condition("babble-5db")`` or a spec such as ``"white:snr_db=10+occlusion:fraction=0.5"``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray  # float32 (samples,)
    sample_rate: int
    babble_pool: list[np.ndarray] = field(default_factory=list)  # other clips' audio, for babble


MAX_BURST_RATE = 20.0  # bursts per second (each 0.3-0.8 s): beyond this the audio is one continuous burst
MAX_BLUR_SIGMA = 100.0  # pixels; the kernel spans 6 sigma


def _check(name: str, value: float, low: float, high: float, open_low: bool = False, integer: bool = False) -> None:
    """A parameter inside ``[low, high]`` (``(low, high]`` with ``open_low``), finite, whole with ``integer``."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > low if open_low else value >= low) \
        and value <= high and (not integer or float(value).is_integer())
    if not ok:
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be {'a whole number ' if integer else ''}in {bounds}, got {value!r}")


def _scale_to_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    p_signal = float(np.mean(signal.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) or 1.0
    p_signal = p_signal if p_signal > 0 else 1e-4  # silent clip: noise at -40 dBFS - snr
    return noise * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f power spectrum."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    spec /= np.sqrt(np.maximum(f, 1.0))
    x = np.fft.irfft(spec, n)
    return (x / (x.std() + 1e-12)).astype(np.float32)


@dataclass
class AdditiveNoise:
    """White or pink noise at ``snr_db`` relative to the clip's own audio power."""

    snr_db: float = 10.0
    color: str = "white"

    def __post_init__(self) -> None:
        _check("snr_db", self.snr_db, -60, 100)
        if self.color not in ("white", "pink"):
            raise ValueError(f"color must be 'white' or 'pink', got {self.color!r}")

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        n = clip.audio.shape[0]
        noise = rng.standard_normal(n).astype(np.float32) if self.color == "white" else pink_noise(n, rng)
        return dataclasses.replace(clip, audio=(clip.audio + _scale_to_snr(clip.audio, noise, self.snr_db))
                                   .astype(np.float32))


@dataclass
class Babble:
    """Overlapping speech: ``voices`` excerpts of other clips' audio mixed in at ``snr_db``."""

    snr_db: float = 5.0
    voices: int = 3

    def __post_init__(self) -> None:
        _check("snr_db", self.snr_db, -60, 100)
        _check("voices", self.voices, 1, 64, integer=True)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        n = clip.audio.shape[0]
        if not clip.babble_pool:
            raise ValueError("babble needs other clips' audio (Clip.babble_pool is empty)")
        mix = np.zeros(n, dtype=np.float32)
        for _ in range(int(self.voices)):
            src = clip.babble_pool[rng.integers(len(clip.babble_pool))]
            if src.shape[0] >= n:
                off = rng.integers(src.shape[0] - n + 1)
                mix += src[off:off + n]
            else:
                mix += np.resize(src, n)
        return dataclasses.replace(clip, audio=(clip.audio + _scale_to_snr(clip.audio, mix, self.snr_db))
                                   .astype(np.float32))


@dataclass
class Bursts:
    """Sudden loud laughter-like bursts: ``rate`` per second, each 0.3-0.8 s of pulsed harmonic noise,
    ``gain_db`` above the clip's RMS."""

    rate: float = 0.5
    gain_db: float = 10.0

    def __post_init__(self) -> None:
        _check("rate", self.rate, 0, MAX_BURST_RATE)
        _check("gain_db", self.gain_db, -60, 60)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        sr, audio = clip.sample_rate, clip.audio.copy()
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) or 0.01
        duration = audio.shape[0] / sr
        for _ in range(rng.poisson(self.rate * duration)):
            length = int(rng.uniform(0.3, 0.8) * sr)
            start = int(rng.integers(max(1, audio.shape[0] - length)))
            t = np.arange(length) / sr
            f0 = rng.uniform(200, 400)
            voice = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) + 0.5 * rng.standard_normal(length)
            envelope = np.clip(np.sin(2 * np.pi * rng.uniform(4, 6) * t), 0, None) * np.hanning(length)
            burst = voice * envelope
            burst *= rms * 10 ** (self.gain_db / 20) / (np.sqrt(np.mean(burst ** 2)) + 1e-12)
            end = min(audio.shape[0], start + length)
            audio[start:end] += burst[:end - start].astype(np.float32)
        return dataclasses.replace(clip, audio=audio)


@dataclass
class Occlusion:
    """A flat patch (``size`` × the frame side) over the face region on a ``fraction`` of frames."""

    fraction: float = 0.3
    size: float = 0.4

    def __post_init__(self) -> None:
        _check("fraction", self.fraction, 0, 1)
        _check("size", self.size, 0, 1, open_low=True)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        frames = clip.frames.copy()
        t, h, w, _ = frames.shape
        ph, pw = max(1, int(self.size * h)), max(1, int(self.size * w))
        for i in np.flatnonzero(rng.random(t) < self.fraction):
            y = int(rng.integers(int(0.2 * h), max(int(0.2 * h) + 1, int(0.8 * h) - ph + 1)))
            x = int(rng.integers(int(0.2 * w), max(int(0.2 * w) + 1, int(0.8 * w) - pw + 1)))
            frames[i, y:y + ph, x:x + pw] = rng.integers(0, 256, size=3, dtype=np.uint8)
        return dataclasses.replace(clip, frames=frames)


@dataclass
class Lighting:
    """Brightness shift (fraction of full scale) and contrast factor for the whole clip."""

    brightness: float = 0.2
    contrast: float = 0.7

    def __post_init__(self) -> None:
        _check("brightness", self.brightness, -1, 1)
        _check("contrast", self.contrast, 0, 10)

    def __call__(self, clip: Clip, _rng: np.random.Generator) -> Clip:
        x = clip.frames.astype(np.float32)
        mean = x.mean()
        x = (x - mean) * self.contrast + mean + 255.0 * self.brightness
        return dataclasses.replace(clip, frames=np.clip(x, 0, 255).astype(np.uint8))


@dataclass
class Blur:
    """Gaussian blur of every frame with standard deviation ``sigma`` pixels."""

    sigma: float = 2.0

    def __post_init__(self) -> None:
        _check("sigma", self.sigma, 0, MAX_BLUR_SIGMA, open_low=True)

    def __call__(self, clip: Clip, _rng: np.random.Generator) -> Clip:
        radius = max(1, int(3 * self.sigma))
        k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        k /= k.sum()
        x = clip.frames.astype(np.float32)
        for axis in (1, 2):
            pad = [(0, 0)] * 4
            pad[axis] = (radius, radius)
            xp = np.pad(x, pad, mode="edge")
            x = sum(k[i] * np.take(xp, np.arange(i, i + x.shape[axis]), axis=axis) for i in range(len(k)))
        return dataclasses.replace(clip, frames=np.clip(x, 0, 255).astype(np.uint8))


@dataclass
class DropFrames:
    """A ``fraction`` of frames is lost and replaced by the last frame that arrived."""

    fraction: float = 0.2

    def __post_init__(self) -> None:
        _check("fraction", self.fraction, 0, 1)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        frames = clip.frames.copy()
        for i in np.flatnonzero(rng.random(frames.shape[0]) < self.fraction):
            if i > 0:
                frames[i] = frames[i - 1]
        return dataclasses.replace(clip, frames=frames)


TRANSFORMS = {"white": lambda **kw: AdditiveNoise(color="white", **kw),
              "pink": lambda **kw: AdditiveNoise(color="pink", **kw),
              "babble": Babble, "bursts": Bursts, "occlusion": Occlusion, "lighting": Lighting, "blur": Blur,
              "drop": DropFrames}


@dataclass
class Condition:
    """A named, recorded corruption: ``name``, its transforms and their parameters (for result files)."""

    name: str
    transforms: list = field(default_factory=list)

    @property
    def params(self) -> list[dict]:
        return [{"transform": type(t).__name__, **dataclasses.asdict(t)} for t in self.transforms]

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        for t in self.transforms:
            clip = t(clip, rng)
        return clip


CONDITIONS = {
    "clean": "",
    "white-10db": "white:snr_db=10",
    "pink-5db": "pink:snr_db=5",
    "babble-5db": "babble:snr_db=5",
    "bursts": "bursts:rate=0.5,gain_db=10",
    "occlusion": "occlusion:fraction=0.5,size=0.4",
    "lighting": "lighting:brightness=-0.25,contrast=0.6",
    "blur": "blur:sigma=2.5",
    "drop-frames": "drop:fraction=0.3",
    "dual": "babble:snr_db=5+occlusion:fraction=0.5,size=0.4",
}


def parse_condition(spec: str) -> Condition:
    """A preset name (``CONDITIONS``) or ``"kind:key=value,...+kind:..."`` with kinds from ``TRANSFORMS``."""
    name = spec
    spec = CONDITIONS.get(spec, spec)
    transforms = []
    for part in filter(None, spec.split("+")):
        kind, _, args = part.partition(":")
        if kind not in TRANSFORMS:
            raise ValueError(f"unknown corruption {kind!r} in condition {name!r}; known: {sorted(TRANSFORMS)} "
                             f"or presets {sorted(CONDITIONS)}")
        kwargs = {}
        for kv in filter(None, args.split(",")):
            key, _, value = kv.partition("=")
            try:
                kwargs[key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"condition {name!r}: {kv!r} is not key=number") from None
        try:
            transforms.append(TRANSFORMS[kind](**kwargs))
        except (TypeError, ValueError) as e:
            raise ValueError(f"condition {name!r}: bad parameters for {kind}: {e}") from None
    return Condition(name, transforms)
