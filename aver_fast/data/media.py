"""Reading video frames (decord, or a folder of JPEG frames) and audio (soundfile, or the video container)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MediaError
from .resample import resample

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")
FRAME_EXTS = (".jpg", ".png")  # a frame folder's numbered frames: 00001.jpg, 00002.jpg, ...
CHUNK = 64  # frames decoded and handed on at a time from a file (fewer for large frames: see READ_BYTES)
READ_BYTES = 64 << 20  # raw frames read at a time (about 10 frames of 1080p): memory does not grow with resolution

# Decoders inherited by a forked worker from its parent: destroying one there hangs (its threads did not survive
# the fork), so a worker keeps them referenced, unused, for its lifetime.
_INHERITED: list = []


def abandon_inherited(obj) -> None:
    """Keep ``obj`` (holding a parent's decoder) alive in this forked process instead of destroying it."""
    _INHERITED.append(obj)


AUDIO_EXTS = (".wav", ".flac")
DECODING_VERSION = 2  # what decoding gives (in cache and CSV provenance); 2: a late audio stream keeps its end


def frames_per_read(frame_bytes: int, limit: int = 64) -> int:
    """How many frames of ``frame_bytes`` to read at a time so that a read holds at most :data:`READ_BYTES` of raw
    pixels (at least 1, at most ``limit``)."""
    return max(1, min(limit, READ_BYTES // frame_bytes))


def frame_files(folder: str) -> list[str]:
    """The frames of a frame folder, in number order: files ``<number>.jpg``/``.png``. An image that is not
    numbered (a cover, a plot), a video inside, or two frames with one number make the folder ambiguous:
    :class:`MediaError` naming the file. Other files (audio, caches) are ignored."""
    numbered: dict[int, str] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        if ext.lower() in VIDEO_EXTS:
            raise MediaError(path, "a video inside a frame folder: is the folder a video (numbered frames) or a "
                                   "folder of videos? Keep one kind per folder")
        if ext.lower() not in FRAME_EXTS:
            continue
        if not stem.isdigit():
            raise MediaError(path, "is not a numbered frame: a frame folder holds only 00001.jpg, 00002.jpg, ... "
                                   "(move other images away)")
        if int(stem) in numbered:
            raise MediaError(path, f"has the number of {numbered[int(stem)]}: two frames {int(stem)}")
        numbered[int(stem)] = path
    if not numbered:
        raise MediaError(folder, "frame folder has no .jpg/.png frames (numbered 00001.jpg, 00002.jpg, ...)")
    return [numbered[k] for k in sorted(numbered)]


def content_digest(path: str, blocks: int = 16, block: int = 1 << 16) -> str:
    """A cheap digest of a video file's (or frame folder's) content: its size and ``blocks`` evenly spaced
    ``block``-byte samples (per frame file: its name, size and first block, for up to ``blocks`` frames). Another
    video of the same length and frame rate gives another digest; reading it costs about 1 MB."""
    import hashlib

    h = hashlib.sha256()
    files = frame_files(path) if os.path.isdir(path) else [path]
    if len(files) > 1:
        h.update("\0".join(f"{os.path.basename(f)}:{os.path.getsize(f)}" for f in files).encode())
        picks = [files[int(k)] for k in np.linspace(0, len(files) - 1, min(blocks, len(files)))]
        offsets = {f: [0] for f in picks}
    else:
        size = os.path.getsize(files[0])
        h.update(str(size).encode())
        offsets = {files[0]: sorted({int(k) for k in np.linspace(0, max(size - block, 0), blocks)})}
    for f, starts in offsets.items():
        with open(f, "rb") as fh:
            for start in starts:
                fh.seek(start)
                h.update(fh.read(block))
    return h.hexdigest()


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
        self._size: tuple[int, int] | None = None  # a frame folder's frame size (its first frame's)
        self._frame_bytes: int | None = None  # bytes of one decoded frame
        if os.path.isdir(self.path):
            self._files = frame_files(self.path)
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
                        if self._size is None:
                            with Image.open(self._files[0]) as first:
                                self._size = first.size
                        if im.size != self._size:
                            raise MediaError(self._files[i], f"is {im.size[0]}x{im.size[1]} but the folder's "
                                                             f"first frame is {self._size[0]}x{self._size[1]}: "
                                                             f"frames of one video have one size")
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

    def frames_per_read(self, limit: int = 64) -> int:
        """:func:`frames_per_read` for this video's frame size (its first frame, decoded once)."""
        if self._frame_bytes is None:
            self._frame_bytes = int(np.prod(self.frames(np.array([0])).shape[1:]))
        return frames_per_read(self._frame_bytes, limit)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None  # decoders are opened per process
        return state


class FrameStream:
    """The frames of a video file or frame folder in order, ``read(k)`` at a time (uint8 ``(<=k, H, W, 3)``; empty
    at the end). Files are decoded sequentially with PyAV: decord's random-access reader grows frame pools of
    ~2.5 GB at 1080p, whatever is read, so whole-video passes (``predict``, face detection) stream instead."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self.position = 0  # frames delivered
        self._folder = VideoSource(self.path) if os.path.isdir(self.path) else None
        if self._folder is None:
            from av.video.reformatter import VideoReformatter

            self._frames = self._decode()
            self._reformatter = VideoReformatter()  # one RGB conversion context (a new one per frame is 4x slower)

    def _decode(self):
        """The decoded frames (PyAV ``VideoFrame``, still in the codec's format) in order."""
        import av

        try:
            container = av.open(self.path)
            stream = container.streams.video[0]
        except Exception as e:  # PyAV raises its own error types per failure
            raise MediaError(self.path, f"cannot decode video ({type(e).__name__}: {str(e)[:200]})") from None
        stream.thread_type = "AUTO"  # FFmpeg's own decoding threads (2x at 1080p on 2 cores)
        try:
            yield from container.decode(stream)
        except Exception as e:
            raise MediaError(self.path, f"cannot decode frames ({type(e).__name__}: {str(e)[:200]})") from None
        finally:
            container.close()

    def read(self, k: int, keep: np.ndarray | None = None) -> np.ndarray:
        """The next ``<= k`` frames. With ``keep`` (bool ``(k,)``) only those frames, and always the last one
        delivered, are converted to RGB (or read from the folder); the others are left zero (a quarter of the
        conversions at the default predict's sampling)."""
        keep = np.ones(k, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        if keep.shape != (k,):
            raise ValueError(f"keep must be a bool mask of the {k} frames to read, got shape {keep.shape}")
        if self._folder is not None:
            idx = np.arange(self.position, min(self.position + k, len(self._folder)))
            count = len(idx)
        else:
            frames = [f for _, f in zip(range(k), self._frames, strict=False)]  # stops at k or at the end
            count = len(frames)
        if not count:
            return np.zeros((0, 0, 0, 3), np.uint8)
        keep = keep[:count].copy()
        keep[-1] = True  # the last frame delivered, which a caller may clamp to past the end
        out = self._from_folder(idx, keep) if self._folder is not None else self._to_rgb(frames, keep)
        self.position += count
        return out

    def _from_folder(self, idx: np.ndarray, keep: np.ndarray) -> np.ndarray:
        read = self._folder.frames(idx[keep])
        out = np.zeros((len(idx), *read.shape[1:]), np.uint8)
        out[keep] = read
        return out

    def _to_rgb(self, frames: list, keep: np.ndarray) -> np.ndarray:
        out = np.zeros((len(frames), frames[0].height, frames[0].width, 3), np.uint8)  # untouched pages: unallocated
        try:
            for i in np.flatnonzero(keep):
                out[i] = self._reformatter.reformat(frames[i], format="rgb24").to_ndarray()
        except Exception as e:
            raise MediaError(self.path, f"cannot decode frames ({type(e).__name__}: {str(e)[:200]})") from None
        return out


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
        # The decoded, padded samples (1, S), read directly: reader[:] gathers them through a list of every index
        # (110 ms of a 20 s video's 155) and stops short of the padded length, dropping the stream's last samples.
        wave = torch.from_numpy(np.asarray(reader._array, dtype=np.float32)).reshape(-1)
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


# ------------------------------------------------------------------------------------------------ decoding in order
def iter_file(path: str, sample_rate: int, chunk: int = CHUNK,
              keep: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[float, int, Iterator]:
    """A video file or frame folder as ``(fps, frames, iterator of (frames uint8 (k, H, W, 3), mono audio samples at
    sample_rate))``, decoded in order (:class:`FrameStream`); at most ``chunk`` frames at a time, fewer for large
    frames (a read holds at most ``READ_BYTES`` of pixels). ``frames`` is the container's count; the
    iterator stops there, or earlier if fewer frames decode. ``keep(indices)`` (bool mask): the frames to convert
    to RGB; the others are zero, except each chunk's last (:meth:`FrameStream.read`)."""
    source = VideoSource(path)
    fps, n = source.fps, len(source)
    chunk = source.frames_per_read(chunk)
    wave = load_audio(path, sample_rate).samples

    def chunks():
        stream, sent = FrameStream(path), 0
        for a in range(0, n, chunk):
            k = min(chunk, n - a)
            frames = stream.read(k, None if keep is None else keep(np.arange(a, a + k)))
            if not len(frames):
                return
            b = a + len(frames)
            until = wave.shape[0] if b == n else int(round(b / fps * sample_rate))
            yield frames, wave[sent:until]
            sent = max(sent, until)
    return fps, n, chunks()


def iter_stream(source: str, sample_rate: int, realtime: bool = False) -> tuple[float, Iterator]:
    """Any PyAV-readable source (file, URL, device) decoded progressively: ``(fps, iterator of (frames uint8
    (1, H, W, 3) or None, mono audio samples at sample_rate or None))``. ``realtime`` delivers a file at its own
    pace (each frame at its timestamp), as a camera would."""
    import av

    try:
        container = av.open(source)
    except Exception as e:  # PyAV raises its own error types per failure (FileNotFoundError, InvalidDataError, ...)
        raise MediaError(source, f"cannot open ({type(e).__name__}: {str(e)[:200]})") from None
    if not container.streams.video:
        container.close()
        raise MediaError(source, "has no video stream")
    if not container.streams.audio:
        container.close()
        raise MediaError(source, "has no audio stream (the model needs the sound)")
    video, audio = container.streams.video[0], container.streams.audio[0]
    rate = video.average_rate or video.guessed_rate
    if not rate or not float(rate) > 0:
        container.close()
        raise MediaError(source, "reports no frame rate")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)

    def frames():
        start = time.perf_counter()
        try:
            for packet in container.demux(video, audio):
                for frame in packet.decode():
                    if realtime and frame.time is not None:
                        time.sleep(max(0.0, start + float(frame.time) - time.perf_counter()))
                    if packet.stream.type == "video":
                        yield frame.to_ndarray(format="rgb24")[None], None
                    else:
                        for out in resampler.resample(frame):
                            yield None, out.to_ndarray().reshape(-1)
            for out in resampler.resample(None):
                yield None, out.to_ndarray().reshape(-1)
        finally:
            container.close()
    return float(rate), frames()
