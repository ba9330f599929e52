"""Reading video frames (decord, or a folder of JPEG frames) and audio (soundfile, or the video container)."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MediaError
from .resample import resample

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")

# Decoders inherited by a forked worker from its parent: destroying one there hangs (its threads did not survive
# the fork), so a worker keeps them referenced, unused, for its lifetime.
_INHERITED: list = []


def abandon_inherited(obj) -> None:
    """Keep ``obj`` (holding a parent's decoder) alive in this forked process instead of destroying it."""
    _INHERITED.append(obj)
AUDIO_EXTS = (".wav", ".flac")


class VideoSource:
    """Frames of one video: a container decoded with decord, or a folder ``00001.jpg, 00002.jpg, ...``.

    ``frames(indices)`` -> uint8 ``(n, H, W, 3)``. Opened lazily, so the object can be sent to worker processes.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None) -> None:
        self.path = str(path)
        self._fps = fps
        self._reader = None
        self._pid = os.getpid()
        self._files: list[str] | None = None
        if os.path.isdir(self.path):
            self._files = sorted(glob.glob(os.path.join(self.path, "*.jpg")) +
                                 glob.glob(os.path.join(self.path, "*.png")))
            if not self._files:
                raise MediaError(self.path, "frame folder has no .jpg/.png frames")
        elif not os.path.isfile(self.path):
            raise MediaError(self.path, "video file not found")

    def _open(self):
        if self._pid != os.getpid():  # a forked worker: never reuse (nor destroy) the parent's decoder
            if self._reader is not None:
                abandon_inherited(self._reader)
            self._reader, self._pid = None, os.getpid()
        if self._reader is None and self._files is None:
            import decord

            try:
                self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
            except Exception as e:  # decord raises its own DECORDError for corrupt files
                raise MediaError(self.path, f"cannot decode video ({type(e).__name__}: {str(e)[:200]})") from None
            if len(self._reader) == 0:
                raise MediaError(self.path, "video has no frames")
        return self._reader

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._open())

    @property
    def fps(self) -> float:
        if self._fps is not None:
            return self._fps
        if self._files is not None:
            return 30.0  # Aff-Wild2's cropped frames carry no rate: pass fps= when the video's differs
        fps = float(self._open().get_avg_fps())
        if not fps > 0:
            raise MediaError(self.path, f"video reports a frame rate of {fps}")
        return fps

    def frames(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if self._files is not None:
            from PIL import Image

            out = []
            for i in indices:
                try:
                    with Image.open(self._files[i]) as im:
                        out.append(np.asarray(im.convert("RGB")))
                except OSError as e:
                    raise MediaError(self._files[i], f"cannot read frame ({e})") from None
            return np.stack(out)
        try:
            return self._open().get_batch(list(indices)).asnumpy()
        except MediaError:
            raise
        except Exception as e:
            raise MediaError(self.path, f"cannot decode frames ({type(e).__name__}: {str(e)[:200]})") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None  # decoders are opened per process
        return state


@dataclass
class Audio:
    """Mono float32 samples at ``sample_rate``; ``samples[i]`` is at time ``i / sample_rate`` of the video."""

    samples: torch.Tensor
    sample_rate: int
    source: str


def find_audio_file(video_path: str) -> str | None:
    """A ``.wav``/``.flac`` next to the video with the same stem (Aff-Wild2 users often extract one)."""
    stem = os.path.splitext(video_path.rstrip(os.sep))[0]
    for ext in AUDIO_EXTS:
        if os.path.isfile(stem + ext):
            return stem + ext
    return None


def check_audio_file(path: str) -> None:
    """Raise :class:`MediaError` if a floating-point ``.wav``/``.flac`` holds NaN or infinite samples (integer PCM
    cannot); read in blocks, so it is cheap enough for discovery."""
    import soundfile

    try:
        if soundfile.info(path).subtype not in ("FLOAT", "DOUBLE"):
            return
        for block in soundfile.blocks(path, blocksize=1 << 16, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise MediaError(path, "audio has NaN/Inf samples")
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(path, f"cannot read audio ({type(e).__name__}: {str(e)[:200]})") from None


def load_audio(video_path: str | os.PathLike, sample_rate: int = 44100) -> Audio:
    """The video's audio, mono-mixed and resampled (band-limited) to ``sample_rate``.

    From a ``.wav``/``.flac`` next to the video (soundfile, resampled here by :func:`resample`), else from the
    container's audio stream (decord, resampled by FFmpeg), padded so that sample ``i`` is at time ``i / rate``.
    """
    video_path = str(video_path)
    path = find_audio_file(video_path)
    if path is not None:
        import soundfile

        try:
            data, sr = soundfile.read(path, dtype="float32", always_2d=True)  # (samples, channels)
        except Exception as e:
            raise MediaError(path, f"cannot read audio ({type(e).__name__}: {str(e)[:200]})") from None
        wave = torch.from_numpy(data).mean(dim=1)
    else:
        if os.path.isdir(video_path):
            raise MediaError(video_path, "frame folder without a .wav/.flac next to it: no audio")
        path = video_path
        import decord

        try:  # FFmpeg's band-limited resampler (swresample) brings it to the target rate and mixes to mono
            reader = decord.AudioReader(path, ctx=decord.cpu(0), sample_rate=sample_rate, mono=True)
        except Exception as e:
            raise MediaError(path, f"no readable audio stream ({type(e).__name__}: {str(e)[:160]})") from None
        reader.add_padding()  # zeros before an audio stream that starts after time 0: sample i is at i / rate
        sr = sample_rate
        wave = torch.from_numpy(reader[:].asnumpy().astype(np.float32)).reshape(-1)
    if wave.numel() == 0:
        raise MediaError(path, "audio track is empty")
    if not torch.isfinite(wave).all():
        raise MediaError(path, "audio has NaN/Inf samples")
    return Audio(resample(wave, int(sr), sample_rate), sample_rate, path)


def write_video(path: str | os.PathLike, frames, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = 44100) -> None:
    """Write an H.264 mp4 (PyAV) from an iterable of uint8 ``(H, W, 3)`` frames, with an AAC mono track when
    ``audio`` is given. Written to a temporary name and renamed, so a failure leaves no partial file."""
    from fractions import Fraction

    import av

    path = str(path)
    tmp = path + ".partial.mp4"
    container = av.open(tmp, "w")
    try:
        vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "18", "preset": "veryfast"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        first = True
        for frame in frames:
            if first:
                vstream.height, vstream.width = frame.shape[0], frame.shape[1]
                first = False
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            audio = np.asarray(audio, dtype=np.float32)
            for start in range(0, audio.shape[0], 1024):
                chunk = av.AudioFrame.from_ndarray(audio[None, start:start + 1024], format="fltp", layout="mono")
                chunk.sample_rate = sample_rate
                chunk.pts = start
                for packet in astream.encode(chunk):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    except BaseException:
        try:
            container.close()
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    container.close()
    os.replace(tmp, path)
