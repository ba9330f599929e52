"""A test video with a real face: the astronaut photograph that ships inside scikit-image, composited onto a
face-free textured background at known, moving positions and scales, with stretches without a face."""
import numpy as np

ASTRONAUT_FACE = np.array([178.0, 64.0, 271.0, 164.0])  # x0, y0, x1, y1 of the face in skimage.data.astronaut()
PATCH = (0, 260, 110, 340)  # rows, cols of the head and shoulders cut from the photograph


def composite(frames: int = 90, height: int = 240, width: int = 320, seed: int = 0,
              absent: tuple[tuple[int, int], ...] = ((30, 38), (60, 90))):
    """-> (frames uint8 (T, H, W, 3), true face boxes (T, 4) float, NaN where the face is absent)."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(seed)
    photo = skimage.data.astronaut()
    r0, r1, c0, c1 = PATCH
    patch = photo[r0:r1, c0:c1]
    face = ASTRONAUT_FACE - np.array([c0, r0, c0, r0])
    noise = rng.random((height // 8, width // 8, 3)).astype(np.float32)
    background = (cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * 120 + 60).clip(0, 255)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    truth = np.full((frames, 4), np.nan)
    for t in range(frames):
        frame = background.copy()
        gone = any(a <= t < b for a, b in absent)
        if not gone:
            s = 0.55 + 0.25 * np.sin(t / 15)  # scale 0.3 .. 0.8
            ph, pw = int(patch.shape[0] * s), int(patch.shape[1] * s)
            x = int((width - pw) * (0.5 + 0.45 * np.sin(t / 11)))
            y = int((height - ph) * (0.5 + 0.4 * np.cos(t / 13)))
            frame[y:y + ph, x:x + pw] = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA)
            truth[t] = face * s + np.array([x, y, x, y])
        video[t] = frame
    return video, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0
