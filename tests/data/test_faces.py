"""Faces (aver_fast/data/faces.py) on a real photograph (scikit-image's astronaut) composited into a synthetic
video at known, moving positions and scales, with frames without a face."""
import os

import numpy as np
import pytest
import torch

from aver_fast.data import faces
from aver_fast.data.faces import FaceTrack, crop_faces, detect_faces, track_faces

from ._faces import composite, iou


@pytest.fixture(scope="module")
def clip():
    return composite(frames=90)  # face absent in frames 30-37 (short gap) and 60-89 (long gap)


def test_detects_the_face_where_it_is_and_nothing_where_it_is_not(clip):
    video, truth = clip
    boxes = detect_faces(video)
    assert boxes.shape == (90, 4) and boxes.dtype == torch.float32
    has = ~np.isnan(truth).any(axis=1)
    found = ~torch.isnan(boxes).any(dim=1).numpy()
    hits = [iou(boxes[i].numpy(), truth[i]) > 0.5 for i in np.flatnonzero(has)]
    assert np.mean(hits) >= 0.9, f"recall {np.mean(hits):.2f}"
    assert found[~has].mean() <= 0.05, "no faces invented on the empty background"
    torch.testing.assert_close(detect_faces(torch.from_numpy(video[:5])), boxes[:5], equal_nan=True)
    with pytest.raises(ValueError, match=r"frames must be uint8 \(T, H, W, 3\) RGB"):
        detect_faces(video[0])


def test_track_bridges_short_gaps_masks_long_ones_and_ignores_stray_detections(clip):
    video, truth = clip
    raw = detect_faces(video)
    raw[10] = torch.tensor([5.0, 5.0, 40.0, 40.0])  # a stray false detection far from the face
    track = track_faces(raw, fps=30.0)
    valid = ~torch.isnan(track).any(dim=1)
    assert valid[:60].all(), "frames 30-37 (0.27 s without a face) are bridged"
    assert not valid[60:].any(), "a 1 s gap is masked, never guessed"
    for t in range(60):
        reference = truth[t] if not np.isnan(truth[t]).any() else None
        if reference is not None:
            assert iou(track[t].numpy(), reference) > 0.5, t
    assert iou(track[10].numpy(), truth[10]) > 0.5, "the stray box is not part of the face's track"
    assert torch.isnan(track_faces(torch.full((5, 4), float("nan")), 30.0)).all()


def test_crops_are_square_112_px_around_the_face(clip):
    video, truth = clip
    crops = crop_faces(video[:3], torch.from_numpy(truth[:3]).float())
    assert crops.shape == (3, 112, 112, 3) and crops.dtype == np.uint8
    # the crop of the true box holds the photograph's face: compare with the face cut straight from the photo
    import cv2
    import skimage.data

    from ._faces import ASTRONAUT_FACE
    x0, y0, x1, y1 = ASTRONAUT_FACE
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * (0.5 + faces.MARGIN)
    photo = skimage.data.astronaut()
    src = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
    reference = cv2.warpAffine(photo, cv2.getAffineTransform(src, np.float32([[0, 0], [112, 0], [0, 112]])),
                               (112, 112), flags=cv2.INTER_AREA)
    centre = slice(28, 84)  # the face itself (the margin may show the composite's background)
    assert np.abs(crops[0, centre, centre].astype(int) - reference[centre, centre].astype(int)).mean() < 20
    grey = crop_faces(video[:1], torch.full((1, 4), float("nan")))
    assert (grey == 128).all(), "no face: a neutral frame (its steps are masked)"


def test_the_track_is_cached_beside_the_video(clip, tmp_path, monkeypatch):
    video, _ = clip
    path = str(tmp_path / "clip.mp4")
    (tmp_path / "clip.mp4").write_bytes(b"the video's bytes")  # what the cache is keyed to
    calls = []

    def frames_of(idx):
        calls.append(len(idx))
        return video[idx]
    first = FaceTrack.load_or_detect(path, frames_of, len(video), 30.0, chunk=40)
    assert calls == [40, 40, 10] and (tmp_path / "clip.faces.npz").is_file()
    monkeypatch.setattr(faces, "detect_faces", lambda *_: pytest.fail("detected again"))
    again = FaceTrack.load_or_detect(path, frames_of, len(video), 30.0)
    torch.testing.assert_close(again.boxes, first.boxes, equal_nan=True)
    assert again.valid[:60].all() and not again.valid[60:].any()
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="of another video or version"):
        other = FaceTrack.load_or_detect(path, lambda idx: video[idx % 90], 100, 30.0)  # another length: detect
    assert other.boxes.shape == (100, 4)
    (tmp_path / "clip.faces.npz").write_bytes(b"damaged")
    with pytest.warns(RuntimeWarning, match="damaged face cache"):
        FaceTrack.load_or_detect(path, frames_of, len(video), 30.0)


def test_dataset_detect_crops_and_masks_steps_without_a_face(clip, tmp_path):
    from aver_fast.data import AffWild2Dataset, AlignmentConfig, write_va, write_video
    from aver_fast.data.faces import resolve_faces

    video, _ = clip  # 90 frames: no face in 30-37 (bridged) and 60-89 (masked)
    os.makedirs(tmp_path / "videos")
    os.makedirs(tmp_path / "annotations")
    t = np.arange(3 * 16000) / 16000
    write_video(str(tmp_path / "videos" / "me.mp4"), video, 30.0, (0.1 * np.sin(440 * t)).astype(np.float32), 16000)
    write_va(str(tmp_path / "annotations" / "me.txt"), np.zeros((90, 2), dtype=np.float32))
    cfg = AlignmentConfig.tiny(window=96, subseq=16, window_stride=96)  # 6 steps ending at 15, 31, ..., 95
    assert resolve_faces("auto", str(tmp_path)) == "detect"
    item = AffWild2Dataset(str(tmp_path), config=cfg, faces="auto")[0]
    # label frames 15, 31 (bridged gap), 47 | 63, 79 (no face) | 95 (past the end)
    assert item["mask"].tolist() == [True, True, True, False, False, False]
    whole = AffWild2Dataset(str(tmp_path), config=cfg, faces="none")[0]
    assert whole["mask"].tolist() == [True] * 5 + [False]
    assert not torch.allclose(item["video"], whole["video"]), "crops, not whole frames"
    (tmp_path / "synthetic.json").write_text("{}")
    assert resolve_faces("auto", str(tmp_path)) == "none"
    with pytest.raises(ValueError, match="faces must be one of"):
        resolve_faces("maybe", str(tmp_path))


def test_online_faces_are_causal_held_then_masked(clip):
    from aver_fast.data.faces import OnlineFaces

    video, truth = clip  # no face in 30-37 and 60-89
    online = OnlineFaces(fps=30.0)
    crops, valid = zip(*(online.process(video[t:t + 1], t) for t in range(90)), strict=True)
    valid = np.concatenate(valid)
    assert np.concatenate(crops).shape == (90, 112, 112, 3)
    assert valid[:60].all(), "the 8-frame gap is held"
    assert not valid[60 + 15 + 3:].any(), "masked once the face has been gone for over 0.5 s"


def test_a_cache_of_another_video_of_the_same_length_is_not_reused(clip, tmp_path):
    """Was: the cache was checked against frame count and fps only; a replaced video got the old boxes."""
    video, _ = clip
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"first video" * 1000)
    first = FaceTrack.load_or_detect(str(path), lambda idx: video[idx], len(video), 30.0)
    assert first.valid[:60].all()
    path.write_bytes(b"other video" * 1000)  # same length and rate, other content: no face in it
    blank = np.zeros_like(video)
    with pytest.warns(RuntimeWarning, match="of another video or version"):
        second = FaceTrack.load_or_detect(str(path), lambda idx: blank[idx], len(video), 30.0)
    assert not second.valid.any()


@pytest.mark.parametrize("boxes", [
    np.zeros((90, 4), dtype=np.int64), np.zeros((91, 4), dtype=np.float32), np.zeros((90, 5), dtype=np.float32),
    np.tile(np.float32([10, 10, 10, 40]), (90, 1)), np.tile(np.float32([40, 10, 10, 40]), (90, 1)),
    np.tile(np.float32([0, 0, np.inf, 40]), (90, 1)), np.tile(np.float32([np.nan, 0, 5, 40]), (90, 1)),
], ids=["int", "too-many", "five-columns", "degenerate", "inverted", "infinite", "part-nan"])
def test_bad_cached_boxes_are_detected_again(clip, tmp_path, boxes):
    video, _ = clip
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"video")
    first = FaceTrack.load_or_detect(str(path), lambda idx: video[idx], len(video), 30.0)
    cache = FaceTrack.cache_path(str(path))
    with np.load(cache) as z:
        fields = dict(z)
    np.savez(cache, **(fields | {"boxes": boxes}))
    with pytest.warns(RuntimeWarning, match="damaged face cache .*boxes"):
        again = FaceTrack.load_or_detect(str(path), lambda idx: video[idx], len(video), 30.0)
    torch.testing.assert_close(again.boxes, first.boxes, equal_nan=True)
