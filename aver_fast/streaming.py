"""Frame-level prediction of a video file or a live source, with bounded work and memory.

Output frames are every ``step``-th frame from the end of the first full window on (``window - 1``,
``window - 1 + step``, ...). Each is predicted by the causal window of ``steps`` sub-sequences that ends at it (its
last step), so a live source gets its answer as soon as the frame arrives. Frames before the first output frame take
the first window's steps (each frame the step whose sub-sequence ends at or after it), frames between two output
frames the later one, frames after the last output frame the last one; a video shorter than a window is one padded
window, as in training.

``step`` divides the sub-sequence length, so every window's sub-sequences end on the same grid as the output frames:
each sub-sequence's backbone features are computed once and reused by every window that holds it (up to ``steps``
windows). Backbone work is ``frames / step`` sub-sequences, whatever the overlap; the fusion runs once per output
frame. Memory: the last sub-sequence's frames, ``steps · subseq / step`` cached features, and ``batch_size``
windows in flight.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .data import AlignmentConfig, MediaError
from .data.alignment import plan_window, segment_bounds, subseq_offsets
from .data.dataset import audio_steps, resize_frames
from .models.precision import precision_context

CHUNK = 64  # frames read and pushed at a time from a file


@dataclass
class Row:
    """One frame's prediction; ``latency_s``: from the push that delivered the window's last frame to this row."""

    frame: int
    time_s: float
    valence: float
    arousal: float
    latency_s: float


def check_step(step: int, cfg: AlignmentConfig) -> None:
    if step < 1 or cfg.subseq % step:
        divisors = [d for d in range(1, cfg.subseq + 1) if cfg.subseq % d == 0]
        raise ValueError(f"step must divide the sub-sequence length {cfg.subseq} (one of {divisors}), got {step}")


class FramePredictor:
    """Feed frames (``uint8 (k, H, W, 3)`` RGB, in order) and audio (mono samples at ``cfg.sample_rate``, in order)
    with :meth:`push`; call :meth:`finish` at the end. Both return the rows that became final, in frame order.

    ``faces`` (a :class:`~aver_fast.data.faces.FaceTrack` or :class:`~aver_fast.data.faces.OnlineFaces`) crops the
    raw frames first; frames without a face get NaN rows (masked, never guessed). ``backbone_calls`` counts the
    sub-sequences run through the backbones.
    """

    def __init__(self, model: torch.nn.Module, cfg: AlignmentConfig, fps: float, step: int = 1, batch_size: int = 2,
                 precision: str = "fp32", faces=None) -> None:
        check_step(step, cfg)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.model, self.cfg, self.fps, self.step, self.batch_size = model, cfg, float(fps), step, batch_size
        self.faces = faces
        self._valid: dict[int, bool] = {}  # frames received and not yet written: has a face (True without faces)
        self._context = precision_context(model, precision)  # outside inference mode (it may move the weights)
        self.first_output = cfg.window - 1
        self.backbone_calls = 0
        self._frames: dict[int, torch.Tensor] = {}  # recent preprocessed frames (3, S, S) by index
        self._n = 0  # frames received
        self._arrival: dict[int, float] = {}  # wall time a frame was pushed (output frames only)
        self._audio = torch.zeros(0)
        self._audio_start = 0  # absolute index of self._audio[0]
        self._audio_end = 0  # samples received
        self._features: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # sub-sequence end -> (regions, audio)
        self._next_end = cfg.subseq - 1  # the next sub-sequence end (on the grid) to compute
        self._next_output = self.first_output
        self._emitted = 0  # rows written (frames 0 .. _emitted - 1)
        self._last: tuple[float, float] | None = None

    # ---- input ----
    def push(self, frames: np.ndarray | None = None, audio: torch.Tensor | np.ndarray | None = None) -> list[Row]:
        now = time.perf_counter()
        if audio is not None:
            a = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
            self._audio = torch.cat([self._audio, a])
            self._audio_end += a.numel()
        if frames is not None and len(frames):
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 (k, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
            valid = np.ones(len(frames), dtype=bool)
            if self.faces is not None:
                frames, valid = self.faces.process(frames, self._n)
            self._valid.update({self._n + i: bool(v) for i, v in enumerate(valid)})
            x = resize_frames(frames, self.cfg)
            for i in range(x.shape[0]):
                self._frames[self._n + i] = x[i]
                if self._n + i >= self.first_output:
                    self._arrival[self._n + i] = now
            self._n += x.shape[0]
        return self._run(final=False)

    @property
    def frames(self) -> int:
        """Frames pushed so far."""
        return self._n

    def finish(self) -> list[Row]:
        if self._n == 0:
            raise ValueError("no frames were pushed")
        return self._run(final=True)

    # ---- work ----
    def _ready(self, end: int, final: bool) -> bool:
        """Whether the audio of the sub-sequence ending at ``end`` has arrived (at the end: what there is)."""
        return final or segment_bounds(end, self.fps, self.cfg)[1] <= self._audio_end

    def _run(self, final: bool) -> list[Row]:
        rows: list[Row] = []
        with torch.inference_mode(), self._context:
            ends = []
            while self._next_end < self._n and self._ready(self._next_end, final):
                ends.append(self._next_end)
                self._next_end += self.step
            self._compute(ends)
            outputs = []
            while self._next_output < self._n and self._next_output in self._features:
                outputs.append(self._next_output)
                self._next_output += self.step
            for k in range(0, len(outputs), self.batch_size):
                rows += self._windows(outputs[k:k + self.batch_size])
            if final:
                if self._emitted == 0:  # shorter than a window: one padded window, as in training
                    rows += self._padded_window()
                rows += self._rows_until(self._n - 1, self._last, time.perf_counter())
        self._forget()
        return rows

    def _compute(self, ends: list[int]) -> None:
        """Backbone features of the sub-sequences ending at ``ends``, ``batch_size · steps`` at a time."""
        cfg = self.cfg
        group = self.batch_size * cfg.steps
        for k in range(0, len(ends), group):
            chunk = ends[k:k + group]
            clips = torch.stack([self._clip(e) for e in chunk])  # (N, 3, T, S, S)
            mels = audio_steps(torch.stack([self._segment(e) for e in chunk]), cfg)  # (N, 1, M, F)
            regions, audio = self.model.subsequence_features(clips, mels)
            self.backbone_calls += len(chunk)
            for e, r, a in zip(chunk, regions, audio, strict=True):
                self._features[e] = (r, a)

    def _clip(self, end: int) -> torch.Tensor:
        """The sampled frames of the sub-sequence ending at ``end``, clamped into the video: ``(3, T, S, S)``."""
        idx = np.clip(end + subseq_offsets(self.cfg), 0, self._n - 1)
        return torch.stack([self._frames[int(i)] for i in idx], dim=1)

    def _segment(self, end: int) -> torch.Tensor:
        a, b = segment_bounds(end, self.fps, self.cfg)
        out = torch.zeros(b - a)
        lo, hi = max(a, self._audio_start), min(b, self._audio_end)
        if hi > lo:
            out[lo - a:hi - a] = self._audio[lo - self._audio_start:hi - self._audio_start]
        return out

    def _window_inputs(self, last_end: int) -> tuple[torch.Tensor, torch.Tensor]:
        ends = [last_end - self.cfg.subseq * (self.cfg.steps - 1 - s) for s in range(self.cfg.steps)]
        regions = torch.stack([self._features[e][0] for e in ends])
        audio = torch.stack([self._features[e][1] for e in ends])
        return regions, audio

    def _windows(self, outputs: list[int]) -> list[Row]:
        inputs = [self._window_inputs(f) for f in outputs]
        pred = self.model.forward_features(torch.stack([r for r, _ in inputs]),
                                           torch.stack([a for _, a in inputs])).float()  # (B, steps, 2)
        rows: list[Row] = []
        now = time.perf_counter()
        for f, p in zip(outputs, pred, strict=True):
            if self._emitted == 0:  # the first window: its steps for the frames before its end
                for s in range(self.cfg.steps - 1):
                    rows += self._rows_until(f - self.cfg.subseq * (self.cfg.steps - 1 - s), p[s].tolist(), now,
                                             self._arrival.get(f, now))
            rows += self._rows_until(f, p[-1].tolist(), now, self._arrival.get(f, now))
            self._last = tuple(p[-1].tolist())
        return rows

    def _padded_window(self) -> list[Row]:
        cfg = self.cfg
        ends = plan_window(0, self._n, cfg)[1]
        self._compute([int(e) for e in ends if int(e) not in self._features])
        regions = torch.stack([self._features[int(e)][0] for e in ends])[None]
        audio = torch.stack([self._features[int(e)][1] for e in ends])[None]
        pred = self.model.forward_features(regions, audio).float()[0]
        now, rows = time.perf_counter(), []
        for s, e in enumerate(ends):
            rows += self._rows_until(min(int(e), self._n - 1), pred[s].tolist(), now)
        self._last = tuple(pred[-1].tolist())
        return rows

    def _rows_until(self, frame: int, va, now: float, arrived: float | None = None) -> list[Row]:
        """Rows for frames ``_emitted .. frame`` with prediction ``va``."""
        rows = []
        latency = now - arrived if arrived is not None else 0.0
        while self._emitted <= frame and va is not None:
            v, a = (float(va[0]), float(va[1])) if self._valid.pop(self._emitted) else (float("nan"), float("nan"))
            rows.append(Row(self._emitted, self._emitted / self.fps, v, a, latency))
            self._emitted += 1
        return rows

    def _forget(self) -> None:
        """Drop frames, audio and features no future sub-sequence or window needs."""
        cfg = self.cfg
        keep_frames = min(self._next_end, self._n) - cfg.subseq  # the next sub-sequence's first frame
        for i in [i for i in self._frames if i < keep_frames]:
            del self._frames[i]
        oldest_end = self._next_output - cfg.subseq * (cfg.steps - 1)
        if self._n > self.first_output:
            for e in [e for e in self._features if e < oldest_end]:
                del self._features[e]
        for f in [f for f in self._arrival if f < self._next_output]:
            del self._arrival[f]
        a = max(segment_bounds(min(self._next_end, max(self._n - 1, 0)), self.fps, cfg)[0], 0)
        if a > self._audio_start:
            cut = min(a, self._audio_end) - self._audio_start
            self._audio, self._audio_start = self._audio[cut:], self._audio_start + cut


def iter_file(path: str, cfg: AlignmentConfig, chunk: int = CHUNK) -> tuple[float, int, Iterator]:
    """A video file or frame folder as ``(fps, frames, iterator of (frames uint8 (k, H, W, 3), audio samples))``,
    decoded in order (:class:`~aver_fast.data.media.FrameStream`); at most ``chunk`` frames at a time, fewer for
    large frames (a read holds at most ``READ_BYTES`` of pixels). ``frames`` is the container's count; the
    iterator stops there, or earlier if fewer frames decode."""
    from .data.media import FrameStream, VideoSource, load_audio

    source = VideoSource(path)
    fps, n = source.fps, len(source)
    chunk = source.frames_per_read(chunk)
    wave = load_audio(path, cfg.sample_rate).samples

    def chunks():
        stream, sent = FrameStream(path), 0
        for a in range(0, n, chunk):
            frames = stream.read(min(chunk, n - a))
            if not len(frames):
                return
            b = a + len(frames)
            until = wave.shape[0] if b == n else int(round(b / fps * cfg.sample_rate))
            yield frames, wave[sent:until]
            sent = max(sent, until)
    return fps, n, chunks()


def predict_file(model: torch.nn.Module, path: str, cfg: AlignmentConfig, step: int = 1, batch_size: int = 2,
                 precision: str = "fp32", faces: str = "none",
                 on_rows: Callable[[list[Row]], None] | None = None) -> tuple[torch.Tensor, FramePredictor]:
    """Per-frame predictions ``(frames, 2)`` of a video file (NaN where no face was found); ``faces``: ``detect``
    (crops of the tracked face, cached beside the video), ``none`` (whole frames) or ``auto`` (``none`` for frame
    folders and synthetic datasets, whose frames are faces already; else ``detect``); ``on_rows`` sees the rows as
    they become final."""
    from .data.faces import FaceTrack, resolve_faces
    from .data.media import FrameStream, VideoSource

    detect = resolve_faces(faces, path) == "detect"
    fps, n, chunks = iter_file(path, cfg)
    track = None
    if detect:
        stream = FrameStream(path)  # frames_of is called on consecutive chunks from frame 0
        track = FaceTrack.load_or_detect(path, lambda idx: stream.read(len(idx)), n, fps,
                                         chunk=VideoSource(path).frames_per_read(CHUNK))
        if not track.valid.any():
            raise MediaError(path, "no face found in any frame (--faces none runs on whole frames)")
    predictor = FramePredictor(model, cfg, fps, step, batch_size, precision, track)
    out = torch.full((n, 2), float("nan"))
    for frames, audio in chunks:
        _collect(predictor.push(frames, audio), out, on_rows)
    _collect(predictor.finish(), out, on_rows)
    if predictor.frames < n:  # the container reported more frames than decode
        warnings.warn(f"{path}: {n} frames reported, {predictor.frames} decoded; the CSV has {predictor.frames}",
                      RuntimeWarning, stacklevel=2)
        out = out[:predictor.frames]
    return out, predictor


def _collect(rows: list[Row], out: torch.Tensor, on_rows) -> None:
    for r in rows:
        out[r.frame, 0], out[r.frame, 1] = r.valence, r.arousal
    if on_rows is not None and rows:
        on_rows(rows)


def iter_stream(source: str, cfg: AlignmentConfig, realtime: bool = False) -> tuple[float, Iterator]:
    """Any PyAV-readable source (file, URL, device) decoded progressively: ``(fps, iterator of (frames uint8
    (1, H, W, 3) or None, mono audio samples at cfg.sample_rate or None))``. ``realtime`` delivers a file at its own
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
    resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)

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
