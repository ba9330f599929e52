"""Faces in your own video, cropped the way Aff-Wild2's ``cropped_aligned`` frames are: detect, track one face over
time, crop a square with a margin, resize to 112 px.

Detector: OpenCV's frontal-face Haar cascade (shipped inside ``opencv-python-headless<5``; offline, CPU, no weights
to download); see README "Faces" for why. ``detect_faces`` gives each frame's largest face; ``track_faces`` keeps
one face per video (the most persistent track), smooths it, holds it over short gaps and masks long ones;
``FaceTrack.load_or_detect`` caches a video's track beside it (``<video>.faces.npz``).
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

CASCADE = "haarcascade_frontalface_alt2.xml"  # default.xml fired on textured backgrounds (README "Faces")
CROP_SIZE = 112  # Aff-Wild2's cropped_aligned frames
MARGIN = 0.2  # added on each side of the detected box, as a fraction of its size
DETECT_SIDE = 320  # frames are detected at most this many pixels on their short side (speed; faces stay > 30 px)
MIN_FACE = 0.05  # smallest face, as a fraction of the frame's short side
HOLD_S = 0.5  # gaps up to this long are bridged; longer gaps are masked
SMOOTH = 5  # frames in the centred moving average of the box
FACE_MODES = ("auto", "detect", "none")
FACE_HELP = {  # the --faces help of the commands that read a dataset, and of predict (one video or source)
    "dataset": "auto: the dataset's cropped_aligned/ frames when present, else detect and crop the face; detect; "
               "none: the frames as found",
    "video": "detect: crop the tracked face (Aff-Wild2-style 112 px crops; frames without a face get no prediction); "
             "none: whole frames; auto: none for frame folders and synthetic datasets (their frames are faces), "
             "else detect"}
CACHE_VERSION = 2  # 2: keyed to the video's content, boxes validated


@functools.cache
def _cascade():
    """OpenCV and the loaded cascade (once per process)."""
    try:
        import cv2
    except ImportError:
        raise ValueError("face detection needs OpenCV: pip install 'opencv-python-headless<5' (the 5.x wheels "
                         "no longer ship the Haar cascades)") from None
    path = os.path.join(cv2.data.haarcascades, CASCADE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"OpenCV has no {CASCADE} at {path}; opencv-python-headless 5.x dropped the cascades: "
                         "pip install 'opencv-python-headless<5'")
    return cv2, cascade


def _as_numpy(frames) -> np.ndarray:
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
    return frames


def detect_faces(frames) -> torch.Tensor:
    """The largest face of each frame: ``frames`` uint8 ``(T, H, W, 3)`` RGB (numpy or torch) -> boxes ``(T, 4)``
    float32 ``[x0, y0, x1, y1]`` in pixels, a row of NaN where no face is found."""
    frames = _as_numpy(frames)
    cv2, cascade = _cascade()
    t, h, w = frames.shape[:3]
    scale = min(1.0, DETECT_SIDE / min(h, w))
    side = max(int(round(MIN_FACE * min(h, w) * scale)), 16)
    out = np.full((t, 4), np.nan, dtype=np.float32)
    for i, frame in enumerate(frames):
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(found):
            x, y, bw, bh = max(found, key=lambda b: b[2] * b[3])
            out[i] = np.array([x, y, x + bw, y + bh], dtype=np.float32) / scale
    return torch.from_numpy(out)


def _same_face(a: np.ndarray, b: np.ndarray, gap: int) -> bool:
    """Whether box ``b``, ``gap`` frames after box ``a``, continues the same face: a similar size, and a centre
    that moved at most half a face per frame of gap (plus half a face)."""
    size_a, size_b = max(a[2] - a[0], a[3] - a[1]), max(b[2] - b[0], b[3] - b[1])
    if not 0.5 <= size_b / size_a <= 2.0:
        return False
    moved = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return moved <= max(size_a, size_b) * (0.5 + 0.5 * gap)


def track_faces(boxes: torch.Tensor, fps: float, hold_s: float = HOLD_S, smooth: int = SMOOTH) -> torch.Tensor:
    """One face over time from per-frame detections ``(T, 4)`` (NaN: none): the most persistent track (detections
    linked frame to frame when size and position continue, gaps up to ``hold_s`` allowed), its box smoothed by a
    centred moving average of ``smooth`` frames, gaps up to ``hold_s`` filled by linear interpolation, everything
    else NaN (masked)."""
    b = boxes.detach().cpu().numpy().astype(np.float64)
    t = b.shape[0]
    hold = max(int(round(hold_s * fps)), 0)
    tracks: list[list[int]] = []
    for i in np.flatnonzero(~np.isnan(b).any(axis=1)):
        for tr in tracks:  # extend the track whose last box overlaps (and is recent)
            j = tr[-1]
            if i - j - 1 <= hold and _same_face(b[j], b[i], i - j - 1):
                tr.append(i)
                break
        else:
            tracks.append([i])
    out = np.full((t, 4), np.nan)
    if not tracks:
        return torch.from_numpy(out.astype(np.float32))
    best = max(tracks, key=len)
    idx = np.array(best)
    kept = b[idx]
    if smooth > 1 and len(idx) > 1:  # centred moving average over the track's own detections
        pad = smooth // 2
        padded = np.concatenate([kept[:1].repeat(pad, 0), kept, kept[-1:].repeat(pad, 0)])
        kernel = np.ones(smooth) / smooth
        kept = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)
    out[idx] = kept
    for a, z in zip(idx[:-1], idx[1:], strict=True):  # bridge short gaps
        if 1 < z - a <= hold + 1:
            w = (np.arange(a + 1, z) - a) / (z - a)
            out[a + 1:z] = out[a] * (1 - w[:, None]) + out[z] * w[:, None]
    return torch.from_numpy(out.astype(np.float32))


def crop_faces(frames, boxes: torch.Tensor, size: int = CROP_SIZE, margin: float = MARGIN) -> np.ndarray:
    """Square crops ``uint8 (T, size, size, 3)`` centred on each box, its longer side plus ``margin`` on each side
    (outside the frame: black, as Aff-Wild2's crops); a NaN box gives a mid-grey frame (its steps are masked)."""
    import cv2

    frames = _as_numpy(frames)
    out = np.full((frames.shape[0], size, size, 3), 128, dtype=np.uint8)
    b = boxes.detach().cpu().numpy()
    for i, frame in enumerate(frames):
        if np.isnan(b[i]).any():
            continue
        cx, cy = (b[i, 0] + b[i, 2]) / 2, (b[i, 1] + b[i, 3]) / 2
        half = max(b[i, 2] - b[i, 0], b[i, 3] - b[i, 1]) * (0.5 + margin)
        src = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
        dst = np.float32([[0, 0], [size, 0], [0, size]])
        out[i] = cv2.warpAffine(frame, cv2.getAffineTransform(src, dst), (size, size), flags=cv2.INTER_AREA,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out


@dataclass
class FaceTrack:
    """A video's tracked face boxes ``(T, 4)`` (NaN where masked); ``valid`` says which frames have a face."""

    boxes: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        return ~torch.isnan(self.boxes).any(dim=1)

    def process(self, frames, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Crops of ``frames`` (frames ``first, first + 1, ...`` of the video) and whether each has a face."""
        return crop_faces(frames, self.boxes[first:first + len(frames)]), self.valid[first:first + len(frames)].numpy()

    @staticmethod
    def cache_path(video: str) -> str:
        return os.path.splitext(video.rstrip(os.sep))[0] + ".faces.npz"

    @classmethod
    def load_or_detect(cls, video: str, frames_of, n_frames: int, fps: float, chunk: int | None = None
                       ) -> "FaceTrack":
        """The cached track beside ``video`` when it is this video's (same content digest, frame count and
        settings) and holds valid boxes, else detection over ``frames_of(indices)`` in chunks of ``chunk`` frames
        (default: as many as :data:`~aver_fast.data.media.READ_BYTES` of raw pixels), tracking, and the cache
        written (a read-only folder only warns). A stale or damaged cache is detected again, with a warning."""
        from .media import content_digest, frames_per_read

        path = cls.cache_path(video)
        settings = np.array([CACHE_VERSION, n_frames, fps, HOLD_S, SMOOTH, MARGIN, DETECT_SIDE, MIN_FACE])
        content = content_digest(video)
        if os.path.isfile(path):
            try:
                with np.load(path, allow_pickle=False) as z:
                    if (z["settings"].shape == settings.shape and np.allclose(z["settings"], settings)
                            and str(z["content"]) == content):
                        return cls(_valid_boxes(z["boxes"], n_frames, path))
                warnings.warn(f"{path}: the face cache is of another video or version, detecting again",
                              RuntimeWarning, stacklevel=2)
            except (OSError, ValueError, KeyError, EOFError) as e:
                warnings.warn(f"{path}: damaged face cache ({e}), detecting again", RuntimeWarning, stacklevel=2)
        if chunk is None:
            chunk = frames_per_read(frames_of(np.array([0]))[0].nbytes, n_frames)
        raw = torch.cat([detect_faces(frames_of(np.arange(a, min(n_frames, a + chunk))))
                         for a in range(0, n_frames, chunk)])
        track = cls(track_faces(raw, fps))
        try:
            tmp = path + ".tmp.npz"
            np.savez(tmp, boxes=track.boxes.numpy(), raw=raw.numpy(), settings=settings, content=np.array(content))
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"cannot cache face boxes at {path} ({e}); they will be detected again next time",
                          RuntimeWarning, stacklevel=2)
        return track


def _valid_boxes(boxes: np.ndarray, n_frames: int, path: str) -> torch.Tensor:
    """Cached boxes as float32 ``(n_frames, 4)``, each row NaN (no face) or finite with ``x0 < x1``, ``y0 < y1``;
    anything else raises ValueError naming ``path``."""
    if boxes.dtype.kind != "f" or boxes.shape != (n_frames, 4):
        raise ValueError(f"{path}: boxes are {boxes.dtype} {boxes.shape}, expected float ({n_frames}, 4)")
    b = boxes.astype(np.float32)
    empty = np.isnan(b).all(axis=1)
    face = b[~empty]
    if not np.isfinite(face).all() or not ((face[:, 2] > face[:, 0]) & (face[:, 3] > face[:, 1])).all():
        raise ValueError(f"{path}: boxes hold partly-NaN, infinite, empty or inverted rows")
    return torch.from_numpy(b)


class OnlineFaces:
    """Faces of a live source, causally: detection on every ``every``-th frame, the box smoothed (exponential
    average), held over gaps up to ``hold_s``, masked after; the same crops as :class:`FaceTrack`."""

    def __init__(self, fps: float, every: int = 3, hold_s: float = HOLD_S, alpha: float = 0.5) -> None:
        self.every, self.alpha = every, alpha
        self.hold = max(int(round(hold_s * fps)), 1)
        self._box: np.ndarray | None = None
        self._seen = -10 ** 9  # the frame of the last detection

    def process(self, frames, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        frames = _as_numpy(frames)
        boxes = np.full((len(frames), 4), np.nan, dtype=np.float32)
        for k, frame in enumerate(frames):
            i = first + k
            if i % self.every == 0:
                found = detect_faces(frame[None])[0].numpy()
                if not np.isnan(found).any():
                    same = self._box is not None and _same_face(self._box, found, i - self._seen - 1)
                    self._box = self.alpha * found + (1 - self.alpha) * self._box if same else found
                    self._seen = i
            if self._box is not None and i - self._seen <= self.hold:
                boxes[k] = self._box
        boxes_t = torch.from_numpy(boxes)
        return crop_faces(frames, boxes_t), ~np.isnan(boxes).any(axis=1)


def frames_are_faces(path: str) -> bool:
    """Whether ``path`` (a dataset root, a video in its ``videos/`` folder, or a frame folder) holds frames that
    are face crops already: a frame folder (``cropped_aligned``), or a dataset written by ``make-synthetic``
    (``synthetic.json``: rendered faces fill the frame)."""
    path = os.path.abspath(str(path).rstrip(os.sep))
    if os.path.isdir(path) and not os.path.isdir(os.path.join(path, "annotations")):
        return True  # a frame folder
    for folder in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.isfile(os.path.join(folder, "synthetic.json")):
            return True
    return False


def resolve_faces(mode: str, source, frames_dir: str | None = None) -> str:
    """``auto``/``detect``/``none`` for ``source`` (a dataset root, a video, a frame folder or a live source) ->
    ``detect`` or ``none``: ``auto`` is ``none`` where the frames are faces already (a dataset's
    ``cropped_aligned/`` or ``frames_dir``, a frame folder, a synthetic dataset or its video), else ``detect``."""
    if _check_mode(mode) != "auto":
        return mode
    if source is None:
        return "none"
    crops = frames_dir or os.path.join(str(source), "cropped_aligned")
    if os.path.isdir(crops) or (os.path.exists(str(source)) and frames_are_faces(str(source))):
        return "none"
    return "detect"


def _check_mode(mode: str) -> str:
    if mode not in FACE_MODES:
        raise ValueError(f"faces must be one of {FACE_MODES}, got {mode!r}")
    return mode
