"""Aff-Wild2-format datasets: discovery, validation, the paper's windows as model-ready tensors, and splits.

Layout under ``root`` (override each folder with the keyword of the same name):

* ``annotations/<video>.txt``: VA files (``<video>_left.txt`` / ``_right.txt`` map to ``<video>``'s media);
* ``videos/<video>.mp4|.avi|...``: the videos (audio from the container, or a ``.wav``/``.flac`` of the same stem);
* ``cropped_aligned/<video>/00001.jpg ...``: optional frame folders, used instead of decoding the video.
"""
from __future__ import annotations

import collections
import glob
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .alignment import AlignmentConfig, plan_window, real_steps, segment_bounds, window_starts
from .annotations import INVALID, read_va
from .corruptions import Babble, Clip, Condition
from .errors import MediaError
from .faces import FaceTrack, crop_faces, resolve_faces
from .media import VIDEO_EXTS, VideoSource, abandon_inherited, check_audio_file, find_audio_file, load_audio
from .preprocess import audio_steps, resize_frames


@dataclass
class VideoEntry:
    name: str
    annotation: str
    media: str  # a video file or a frame folder
    labels: np.ndarray  # (frames, 2)
    frames: int
    fps: float


@dataclass
class Summary:
    """What a dataset found: videos used, windows, and each skipped file with its problem."""

    videos: int = 0
    windows: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.videos} videos, {self.windows} windows, {len(self.skipped)} skipped"]
        lines += [f"  skipped {path}: {problem}" for path, problem in self.skipped]
        return "\n".join(lines)


def _media_for(name: str, videos_dir: str, frames_dir: str | None) -> str | None:
    stems = [name] + [name[: -len(s)] for s in ("_left", "_right") if name.endswith(s)]
    for stem in stems:
        if frames_dir and os.path.isdir(os.path.join(frames_dir, stem)):
            return os.path.join(frames_dir, stem)
        for ext in VIDEO_EXTS:
            if os.path.isfile(os.path.join(videos_dir, stem + ext)):
                return os.path.join(videos_dir, stem + ext)
    return None


def _has_audio(media: str) -> bool:
    """Whether ``media`` has audio (a ``.wav``/``.flac`` beside it, checked for non-finite samples, or a stream)."""
    audio_file = find_audio_file(media)
    if audio_file is not None:
        check_audio_file(audio_file)
        return True
    if os.path.isdir(media):
        return False
    import av

    try:
        with av.open(media) as c:
            return len(c.streams.audio) > 0
    except Exception as e:
        raise MediaError(media, f"cannot open container ({type(e).__name__}: {str(e)[:160]})") from None


def _inside(annotations_dir: str, name: str) -> str:
    """``annotations_dir/name.txt``; a name that would lead outside the folder (``../x``, ``a/b``, an absolute
    path) is an error, never read."""
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"video name {name!r} is not a file name inside {annotations_dir}: names from --videos "
                         "and split lists must be plain video names (no folders, no '..')")
    return os.path.join(annotations_dir, name + ".txt")


def discover(root: str | os.PathLike, names: list[str] | None = None, annotations_dir: str | None = None,
             videos_dir: str | None = None, frames_dir: str | None = None, length_tolerance: int = 0,
             skip_bad: bool = False, summary: Summary | None = None, use_frames: bool = True) -> list[VideoEntry]:
    """Find, open and check every annotated video (or the ``names`` given); bad ones raise :class:`MediaError`
    naming the file and the problem, or with ``skip_bad`` are skipped and listed in ``summary``. ``use_frames=False``
    reads the videos even where ``cropped_aligned/`` frames exist."""
    root = str(root)
    annotations_dir = annotations_dir or os.path.join(root, "annotations")
    videos_dir = videos_dir or os.path.join(root, "videos")
    if not use_frames:
        frames_dir = None
    elif frames_dir is None and os.path.isdir(os.path.join(root, "cropped_aligned")):
        frames_dir = os.path.join(root, "cropped_aligned")
    if not os.path.isdir(annotations_dir):
        raise MediaError(annotations_dir, "annotation folder not found")
    if names is None:
        names = sorted(os.path.splitext(os.path.basename(p))[0]
                       for p in glob.glob(os.path.join(annotations_dir, "*.txt")))
    entries = []
    for name in names:
        ann = _inside(annotations_dir, name)
        try:
            labels = read_va(ann)
            media = _media_for(name, videos_dir, frames_dir)
            if media is None:
                raise MediaError(os.path.join(videos_dir, name + ".mp4"),
                                 "no video or frame folder for this annotation")
            source = VideoSource(media)
            n = len(source)
            if abs(n - len(labels)) > length_tolerance:
                raise MediaError(ann, f"has {len(labels)} frames but {media} has {n} "
                                      f"(length_tolerance={length_tolerance})")
            if not _has_audio(media):
                raise MediaError(media, "video has no audio stream (and no .wav/.flac next to it)")
            n = min(n, len(labels))
            if not (labels[:n] != INVALID).any():
                raise MediaError(ann, "no valid (non -5) labels")
            entries.append(VideoEntry(name, ann, media, labels[:n], n, source.fps))
        except MediaError as e:
            if not skip_bad:
                raise
            if summary is not None:
                summary.skipped.append((e.path, e.problem))
    return entries


def split_videos(names: list[str], seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
                 ) -> dict[str, list[str]]:
    """The paper's random split by video (60/20/20 by default), deterministic in ``seed``."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {fractions}")
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n_train = int(round(fractions[0] * len(order)))
    n_val = int(round(fractions[1] * len(order)))
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def read_split_list(path: str | os.PathLike) -> list[str]:
    """An official split list: one video name per line (extensions are dropped)."""
    if not os.path.isfile(path):
        raise MediaError(path, "split list not found")
    with open(path) as f:
        return [os.path.splitext(ln.strip())[0] for ln in f if ln.strip()]


class AffWild2Dataset(Dataset):
    """Windows of Aff-Wild2-format videos as model-ready tensors.

    Item ``i`` is a dict: ``video (L, 3, T, S, S)`` float (Kinetics-normalised), ``audio (L, 1, n_mels, frames)``
    normalised dB log-mel, ``target (L, 2)`` [valence, arousal] of each step's last frame, ``mask (L,)`` (the
    steps the loss and the metric count: False for steps whose label frame is past the end of the video and for
    invalid (-5) labels), ``steps (L,)`` (the model's padding mask: False for the steps wholly past the end, see
    :func:`~aver_fast.data.alignment.real_steps`), ``video_name`` and ``start``.
    ``condition`` (a :class:`~aver_fast.data.corruptions.Condition`) corrupts the raw frames and audio first,
    seeded by ``(seed, i)``, so the same index always gives the same sample. Decoders are opened lazily in each
    worker process (safe with ``num_workers > 0``); each worker caches the audio of a few recent videos.
    """

    def __init__(self, root: str | os.PathLike, videos: list[str] | None = None,
                 config: AlignmentConfig | None = None, condition: Condition | None = None, seed: int = 0,
                 skip_bad: bool = False, length_tolerance: int = 0, audio_cache: int = 4,
                 entries: list[VideoEntry] | None = None, faces: str = "none", **dirs) -> None:
        self.config = config or AlignmentConfig()
        self.condition, self.seed = condition, seed
        self.summary = Summary()
        self.faces = resolve_faces(faces, root, dirs.get("frames_dir"))
        self.entries = entries if entries is not None else discover(
            root, videos, length_tolerance=length_tolerance, skip_bad=skip_bad, summary=self.summary,
            use_frames=self.faces == "none", **dirs)
        if not self.entries:
            raise MediaError(root, "no usable video found" + (f"; skipped:\n{self.summary}" if self.summary.skipped
                                                               else ""))
        self.index = [(v, s) for v, e in enumerate(self.entries) for s in window_starts(e.frames, self.config)]
        self.summary.videos, self.summary.windows = len(self.entries), len(self.index)
        self._audio_cache = audio_cache
        self._reset_caches()

    def _reset_caches(self) -> None:
        """Decoders and cached audio belong to one process (workers, forked or spawned, open their own)."""
        if getattr(self, "_sources", None):
            abandon_inherited(self._sources)
        self._pid = os.getpid()
        self._sources: dict[int, VideoSource] = {}
        self._audio: collections.OrderedDict = collections.OrderedDict()
        self._tracks: dict[int, FaceTrack] = {}

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_sources'] = {}
        state['_audio'] = collections.OrderedDict()
        state['_pid'] = None
        return state

    def _source(self, v: int) -> VideoSource:
        if self._pid != os.getpid():
            self._reset_caches()
        if v not in self._sources:
            e = self.entries[v]
            self._sources[v] = VideoSource(e.media, fps=e.fps)
        return self._sources[v]

    def _track(self, v: int) -> FaceTrack:
        """The video's face track (detected once, cached beside the video and in this process)."""
        if v not in self._tracks:
            e, source = self.entries[v], self._source(v)
            self._tracks[v] = FaceTrack.load_or_detect(e.media, source.frames, e.frames, e.fps)
        return self._tracks[v]

    def _wave(self, v: int) -> torch.Tensor:
        if self._pid != os.getpid():
            self._reset_caches()
        if v in self._audio:
            self._audio.move_to_end(v)
        else:
            self._audio[v] = load_audio(self.entries[v].media, self.config.sample_rate).samples
            while len(self._audio) > self._audio_cache:
                self._audio.popitem(last=False)
        return self._audio[v]

    def __getitem__(self, i: int) -> dict:
        cfg = self.config
        v, start = self.index[i]
        e = self.entries[v]
        frame_idx, ends, inside = plan_window(start, e.frames, cfg)
        unique, inverse = np.unique(frame_idx, return_inverse=True)
        corrupt = self.condition is not None and bool(self.condition.transforms)
        # a corruption acts on the whole scene of the window: only then is the window held at full resolution
        frames = self._source(v).frames(unique) if corrupt else None  # (U, H, W, 3) uint8
        track = self._track(v) if self.faces == "detect" else None
        # the audio of the whole window, by timestamp; then one segment per step
        a0, _ = segment_bounds(int(ends[0]), e.fps, cfg)
        _, a1 = segment_bounds(int(ends[-1]), e.fps, cfg)
        wave = self._wave(v)
        window_audio = torch.zeros(a1 - a0)
        lo, hi = max(a0, 0), min(a1, wave.shape[0])
        if hi > lo:
            window_audio[lo - a0:hi - a0] = wave[lo:hi]
        if corrupt:
            rng = np.random.default_rng([self.seed, i])
            pool = [self._wave(u).numpy() for u in self._babble_sources(v, rng)]
            clip = self.condition(Clip(frames, window_audio.numpy(), cfg.sample_rate, pool), rng)
            frames, window_audio = clip.frames, torch.from_numpy(clip.audio)
        segments = torch.stack([window_audio[segment_bounds(int(j), e.fps, cfg)[0] - a0:
                                             segment_bounds(int(j), e.fps, cfg)[1] - a0] for j in ends])
        labels = e.labels[np.minimum(ends, e.frames - 1)]
        mask = inside & (labels != INVALID).all(axis=1)
        if track is not None:  # no face at the step's label frame: masked, like an unlabelled frame
            mask &= track.valid[torch.from_numpy(np.minimum(ends, e.frames - 1))].numpy()
        clips = self._resized(v, unique, frames, track)[torch.from_numpy(inverse.reshape(frame_idx.shape))]
        return {"video": clips.permute(0, 2, 1, 3, 4).contiguous(),  # (L, 3, T, S, S)
                "audio": audio_steps(segments, self.config), "target": torch.from_numpy(labels.astype(np.float32)),
                "mask": torch.from_numpy(mask), "steps": torch.from_numpy(real_steps(ends, e.frames, cfg)),
                "video_name": e.name, "start": start}

    def _babble_sources(self, v: int, rng: np.random.Generator) -> list[int]:
        """Other videos whose speech is mixed in by a babble condition (this video's own if it is alone)."""
        if not any(isinstance(t, Babble) for t in self.condition.transforms):
            return []
        others = [u for u in range(len(self.entries)) if u != v] or [v]
        return list(rng.choice(others, size=min(3, len(others)), replace=False))

    def _resized(self, v: int, unique: np.ndarray, frames: np.ndarray | None, track: FaceTrack | None
                 ) -> torch.Tensor:
        """Frames ``unique`` of video ``v`` cropped to the face (``track``) and resized: ``(U, 3, S, S)``. Given
        ``frames`` (a corrupted window) they are used; else they are read a few at a time (at most
        ``READ_BYTES`` of raw pixels), so memory follows the model's input size, not the video's resolution."""
        def prepare(raw: np.ndarray, idx: np.ndarray) -> torch.Tensor:
            if track is not None:  # cropped after any corruption, which acts on the scene
                raw = crop_faces(raw, track.boxes[torch.from_numpy(idx)])
            return resize_frames(raw, self.config)
        if frames is not None:
            return prepare(frames, unique)
        source = self._source(v)
        per = source.frames_per_read(len(unique))
        return torch.cat([prepare(source.frames(unique[k:k + per]), unique[k:k + per])
                          for k in range(0, len(unique), per)])
