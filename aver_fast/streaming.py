"""Frame-level predictions of whole videos: one rule for which window's step predicts which frame, used by
``evaluate`` and the demo (:func:`predict_frames`, windows from the dataset, corruptions included) and by
``predict`` (:class:`FramePredictor`, frames and audio pushed in order from a file or a live source).

Rules (``RULES``; ``RULE`` is every command's default):

* ``windows``: the paper's and the public evaluation's. Non-overlapping windows from frame 0 (the last one padded
  past the end, as in training); each frame takes the step whose sub-sequence ends at or after it. Backbone work is
  one sub-sequence per ``subseq`` frames, the fusion one window per ``window`` frames; a frame is known when its
  window ends.
* ``causal``: low latency. Output frames are every ``step``-th frame from the end of the first full window on
  (``window - 1``, ``window - 1 + step``, ...); each takes the last step of the causal window that ends at it, so
  a live source gets its answer as soon as the frame arrives. Frames before the first output frame take the first
  window's steps (as ``windows``), frames between two output frames the later one, frames after the last output
  frame the last one; a video shorter than a window is one padded window.

In :class:`FramePredictor` ``step`` divides the sub-sequence length, so every window's sub-sequences end on one
grid: each sub-sequence's backbone features are computed once and reused by every window that holds it. Backbone
work is ``frames / step`` sub-sequences (``step = subseq`` under ``windows``); only the frames they sample are resized
(:meth:`FramePredictor.needs`; ``predict_file`` does not even convert the others to RGB); memory: the last
sub-sequence's frames, the features of one window and ``batch_size`` windows in flight.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .data import AffWild2Dataset, AlignmentConfig, MediaError
from .data.alignment import plan_window, real_steps, segment_bounds, subseq_offsets
from .data.media import CHUNK, iter_file
from .data.preprocess import audio_steps, resize_frames
from .models.precision import cpu_layout, precision_context

RULES = ("windows", "causal")
RULE = "windows"  # the default of evaluate, predict and the demo (see the module docstring)
BATCH_SIZE = 2  # windows per forward pass: peak memory grows with it, not with the video's length


@dataclass
class Row:
    """One frame's prediction; ``latency_s``: from the push that delivered the window's last frame to this row."""

    frame: int
    time_s: float
    valence: float
    arousal: float
    latency_s: float


def check_rule(rule: str, step: int | None, cfg: AlignmentConfig) -> int:
    """The sub-sequence grid's stride for ``rule``: ``step`` under ``causal`` (it must divide the sub-sequence
    length; default 1), the sub-sequence length under ``windows`` (which takes no ``step``)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "windows":
        if step is not None and step != cfg.subseq:
            raise ValueError(f"step={step} applies to rule 'causal' (--rule causal); rule 'windows' predicts each "
                             "non-overlapping window once")
        return cfg.subseq
    step = 1 if step is None else step
    if step < 1 or cfg.subseq % step:
        divisors = [d for d in range(1, cfg.subseq + 1) if cfg.subseq % d == 0]
        raise ValueError(f"step must divide the sub-sequence length {cfg.subseq} (one of {divisors}), got {step}")
    return step


def window_steps(rule: str, cfg: AlignmentConfig, first: bool) -> range:
    """The steps of a window that predict frames: all of them under ``windows`` (and for a video's first window
    under ``causal``), else the last one. Step ``s`` predicts the frames up to its sub-sequence's end, from the
    first frame no earlier step or window predicted."""
    return range(cfg.steps) if rule == "windows" or first else range(cfg.steps - 1, cfg.steps)


def output_stride(rule: str, cfg: AlignmentConfig, step: int) -> int:
    """Frames between the last frames of consecutive predicted windows."""
    return cfg.window if rule == "windows" else step


class FramePredictor:
    """Feed frames (``uint8 (k, H, W, 3)`` RGB, in order) and audio (mono samples at ``cfg.sample_rate``, in order)
    with :meth:`push`; call :meth:`finish` at the end. Both return the rows that became final, in frame order.

    ``rule`` and ``step``: see the module docstring. ``faces`` (a :class:`~aver_fast.data.faces.FaceTrack` or
    :class:`~aver_fast.data.faces.OnlineFaces`) crops the raw frames first; frames without a face get NaN rows
    (masked, never guessed). ``backbone_calls`` counts the sub-sequences run through the backbones.
    """

    def __init__(self, model: torch.nn.Module, cfg: AlignmentConfig, fps: float, step: int | None = None,
                 batch_size: int = BATCH_SIZE, precision: str = "fp32", faces=None, rule: str = RULE) -> None:
        step = check_rule(rule, step, cfg)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.model = model
        self.cfg = cfg
        self.fps = float(fps)
        self.batch_size = batch_size
        self.rule = rule
        self.step = step
        self.stride = output_stride(rule, cfg, step)
        self.faces = faces
        self._valid: dict[int, bool] = {}  # frames received and not yet written: has a face (True without faces)
        self._context = precision_context(model, precision)
        self._layout = contextlib.ExitStack()  # the backbone's CPU layout, from here until finish()
        self._layout.enter_context(cpu_layout(model))
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
            index = self._n + np.arange(len(frames))
            used = self.needs(index)
            for i, x in zip(index[used], resize_frames(frames[used], self.cfg), strict=True):
                self._frames[int(i)] = x
            for i in index[index >= self.first_output]:
                self._arrival[int(i)] = now
            self._n += len(frames)
        return self._run(final=False)

    @property
    def frames(self) -> int:
        """Frames pushed so far."""
        return self._n

    def finish(self) -> list[Row]:
        """The remaining rows; the model's weights get back the layout they had before this predictor."""
        if self._n == 0:
            raise ValueError("no frames were pushed")
        try:
            return self._run(final=True)
        finally:
            self._layout.close()

    def needs(self, index: np.ndarray) -> np.ndarray:
        """Which frames of a push of frames ``index`` (consecutive) this predictor reads, bool: those a
        sub-sequence on the grid samples (a quarter of them at ``step`` 32 and under ``windows``), and the last
        one, which sub-sequences past the end of the video are clamped to. The others may be left undecoded."""
        behind = index[:, None] - subseq_offsets(self.cfg)[None, :] - (self.cfg.subseq - 1)  # frames to its end
        used = ((behind >= 0) & (behind % self.step == 0)).any(axis=1)
        used[-1:] = True
        return used

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
                self._next_output += self.stride
            for k in range(0, len(outputs), self.batch_size):
                rows += self._windows(outputs[k:k + self.batch_size])
            if final:
                if self._emitted == 0 or (self.rule == "windows" and self._emitted < self._n):
                    rows += self._padded_window(self._emitted)  # the last window, padded past the end as in training
                rows += self._rows_until(self._n - 1, self._last, time.perf_counter())
        self._forget()
        return rows

    def _compute(self, ends: list[int]) -> None:
        """Backbone features of the sub-sequences ending at ``ends``, ``batch_size · steps`` at a time. Past the
        end of the video (a padded last window) sub-sequences of the same clamped frames and silent audio are the
        same input: each is computed once."""
        cfg = self.cfg
        keys = {e: self._input_key(e) for e in ends}
        first: dict[tuple, int] = {}  # input key -> the first end with that input
        todo = [e for e in ends if first.setdefault(keys[e], e) == e]
        group = self.batch_size * cfg.steps
        for k in range(0, len(todo), group):
            chunk = todo[k:k + group]
            clips = torch.stack([self._clip(e) for e in chunk])  # (N, 3, T, S, S)
            mels = audio_steps(torch.stack([self._segment(e) for e in chunk]), cfg)  # (N, 1, M, F)
            regions, audio = self.model.subsequence_features(clips, mels)
            self.backbone_calls += len(chunk)
            for e, r, a in zip(chunk, regions, audio, strict=True):
                self._features[e] = (r, a)
        for e in ends:
            self._features[e] = self._features[first[keys[e]]]

    def _input_key(self, end: int) -> tuple:
        """What the sub-sequence ending at ``end`` is computed from: its clamped frame indices and its audio
        segment's start (None when no sample of it has arrived: silence)."""
        idx = tuple(np.clip(end + subseq_offsets(self.cfg), 0, self._n - 1).tolist())
        a, b = segment_bounds(end, self.fps, self.cfg)
        return idx, a if min(b, self._audio_end) > max(a, self._audio_start) else None

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
            for s in window_steps(self.rule, self.cfg, self._emitted == 0):
                rows += self._rows_until(f - self.cfg.subseq * (self.cfg.steps - 1 - s), p[s].tolist(), now,
                                         self._arrival.get(f, now))
            self._last = tuple(p[-1].tolist())
        return rows

    def _padded_window(self, start: int) -> list[Row]:
        """The window at ``start`` that runs past the last frame: its frames clamped to the video, its audio
        zero-padded, its steps predicting the frames up to the end."""
        cfg = self.cfg
        ends = plan_window(start, self._n, cfg)[1]
        self._compute([int(e) for e in ends if int(e) not in self._features])
        regions = torch.stack([self._features[int(e)][0] for e in ends])[None]
        audio = torch.stack([self._features[int(e)][1] for e in ends])[None]
        mask = torch.from_numpy(real_steps(ends, self._n, cfg))[None]
        pred = self.model.forward_features(regions, audio, mask=mask).float()[0]
        now, rows = time.perf_counter(), []
        for s, e in enumerate(ends):
            rows += self._rows_until(min(int(e), self._n - 1), pred[s].tolist(), now)
        self._last = tuple(pred[mask[0]][-1].tolist())  # the last real step's (the padded ones predict 0)
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


def predict_file(model: torch.nn.Module, path: str, cfg: AlignmentConfig, step: int | None = None,
                 batch_size: int = BATCH_SIZE, precision: str = "fp32", faces: str = "none",
                 on_rows: Callable[[list[Row]], None] | None = None, rule: str = RULE
                 ) -> tuple[torch.Tensor, FramePredictor]:
    """Per-frame predictions ``(frames, 2)`` of a video file (NaN where no face was found); ``faces``: ``detect``
    (crops of the tracked face, cached beside the video), ``none`` (whole frames) or ``auto`` (``none`` for frame
    folders and synthetic datasets, whose frames are faces already; else ``detect``); ``on_rows`` sees the rows as
    they become final."""
    from .data.faces import FaceTrack, resolve_faces
    from .data.media import FrameStream, VideoSource

    detect = resolve_faces(faces, path) == "detect"
    predictor = None  # made below; the frames to convert are asked for from the first chunk on
    fps, n, chunks = iter_file(path, cfg.sample_rate, keep=lambda index: predictor.needs(index))
    track = None
    if detect:
        stream = FrameStream(path)  # frames_of is called on consecutive chunks from frame 0
        track = FaceTrack.load_or_detect(path, lambda idx: stream.read(len(idx)), n, fps,
                                         chunk=VideoSource(path).frames_per_read(CHUNK))
        if not track.valid.any():
            raise MediaError(path, "no face found in any frame (--faces none runs on whole frames)")
    predictor = FramePredictor(model, cfg, fps, step, batch_size, precision, track, rule)
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


def predict_frames(model: torch.nn.Module, ds: AffWild2Dataset, batch_size: int = BATCH_SIZE,
                   precision: str = "fp32", rule: str = RULE, step: int | None = None) -> dict:
    """Per video of ``ds``: ``frames`` ``(frames, 2)`` predicted by ``rule`` (the module docstring), its ``labels``
    and, per window run, ``steps`` ``(pred, target, mask)``. ``ds``'s windows must be the rule's:
    ``window_stride`` = the window under ``windows``, ``step`` under ``causal``. Windows are read and run
    ``batch_size`` at a time, so peak memory does not depend on the video's length; ``precision`` as
    :func:`~aver_fast.models.precision.precision_context`."""
    cfg = ds.config
    stride = output_stride(rule, cfg, check_rule(rule, step, cfg))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if cfg.window_stride != stride:
        raise ValueError(f"the dataset's windows are {cfg.window_stride} frames apart; rule {rule!r} needs {stride}")
    entries = {e.name: e for e in ds.entries}
    # under "causal" a window past the end predicts nothing, unless the video is shorter than a window
    order = [i for i, (v, start) in enumerate(ds.index)
             if rule == "windows" or start == 0 or start + cfg.window <= ds.entries[v].frames]
    out: dict = {}
    with cpu_layout(model), torch.inference_mode(), precision_context(model, precision):
        for k0 in range(0, len(order), batch_size):
            items = [ds[i] for i in order[k0:k0 + batch_size]]
            pred = model(torch.stack([it["video"] for it in items]), torch.stack([it["audio"] for it in items]),
                         mask=torch.stack([it["steps"] for it in items])).float()
            for it, p in zip(items, pred, strict=True):
                e = entries[it["video_name"]]
                rec = out.setdefault(e.name, {"frames": torch.full((e.frames, 2), float("nan")),
                                              "labels": torch.from_numpy(e.labels), "steps": [], "_next": 0})
                for s in window_steps(rule, cfg, it["start"] == 0):
                    end = min(it["start"] + (s + 1) * cfg.subseq, e.frames)
                    rec["frames"][rec["_next"]:end] = p[s]
                    rec["_next"] = max(rec["_next"], end)
                rec["steps"].append((p, it["target"], it["mask"]))
        for rec in out.values():  # frames after the last window (causal): the last prediction
            rec["frames"][rec.pop("_next"):] = rec["steps"][-1][0][-1]
    return out
