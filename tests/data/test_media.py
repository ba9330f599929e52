"""Reading real (small, generated) media files, including every kind of bad input."""
import os

import numpy as np
import pytest
import soundfile
import torch

from aver_fast.data import MediaError, VideoSource, load_audio, write_video

from .conftest import tone


def frames(n, size=32):
    return [np.full((size, size, 3), (i * 7) % 256, dtype=np.uint8) for i in range(n)]


def test_mp4_with_audio_track(tmp_path):
    path = str(tmp_path / "v.mp4")
    write_video(path, frames(30), 30.0, tone(1.0, 44100), 44100)
    v = VideoSource(path)
    assert len(v) == 30 and v.fps == pytest.approx(30.0)
    assert v.frames([0, 29]).shape == (2, 32, 32, 3)
    a = load_audio(path)
    assert a.sample_rate == 44100 and abs(a.samples.shape[0] - 44100) < 2048  # AAC frames pad the end
    spec = torch.fft.rfft(a.samples[4000:40000])
    assert abs(int(spec.abs().argmax()) * 44100 / 36000 - 440) < 5  # the tone survives


@pytest.mark.parametrize("sr, channels", [(44100, 1), (48000, 2), (22050, 1), (11025, 2)])
def test_wav_next_to_video_is_preferred_mono_mixed_and_resampled(tmp_path, sr, channels):
    path = str(tmp_path / "v.mp4")
    write_video(path, frames(10), 10.0)  # no audio track in the container
    soundfile.write(str(tmp_path / "v.wav"), tone(1.0, sr, channels=channels), sr)
    a = load_audio(path, 44100)
    assert a.source.endswith("v.wav") and a.samples.shape == (44100,)
    assert (a.samples[1000:-1000].abs().max() - 0.3).abs() < 0.01


def _write_late_audio(path, seconds, delay, sr=44100):
    """An mp4 whose 440 Hz audio stream starts ``delay`` s after its video and ends with it."""
    import av

    c = av.open(path, "w")
    video, audio = c.add_stream("libx264", rate=30), c.add_stream("aac", rate=sr)
    video.pix_fmt, video.height, video.width, audio.layout = "yuv420p", 32, 32, "mono"
    for f in frames(int(30 * seconds)):
        for p in video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    x = tone(seconds - delay, sr)
    for start in range(0, x.shape[0], 1024):
        f = av.AudioFrame.from_ndarray(x[None, start:start + 1024], format="fltp", layout="mono")
        f.sample_rate, f.pts = sr, start + int(delay * sr)
        for p in audio.encode(f):
            c.mux(p)
    for s in (video, audio):
        for p in s.encode():
            c.mux(p)
    c.close()


def test_audio_that_starts_late_is_padded_in_front_and_keeps_its_end(tmp_path):
    path = str(tmp_path / "late.mp4")
    _write_late_audio(path, seconds=2.0, delay=0.5)
    a = load_audio(path).samples
    heard = (a.abs() > 1e-3).nonzero()[:, 0]
    assert abs(int(heard[0]) - 0.5 * 44100) < 2048  # silence until the stream starts (AAC priming aside)
    assert abs(a.shape[0] - 2.0 * 44100) < 2048 and int(heard[-1]) > a.shape[0] - 1024  # its last samples are kept


def test_silent_track_loads_as_silence(tmp_path):
    path = str(tmp_path / "v.mp4")
    write_video(path, frames(10), 10.0, np.zeros(44100, dtype=np.float32), 44100)
    assert load_audio(path).samples.abs().max() < 1e-6


def test_frame_folder(tmp_path):
    from PIL import Image
    folder = tmp_path / "cropped_aligned" / "v"
    folder.mkdir(parents=True)
    for i, f in enumerate(frames(5)):
        Image.fromarray(f).save(folder / f"{i + 1:05d}.jpg")
    v = VideoSource(str(folder), fps=25.0)
    assert len(v) == 5 and v.fps == 25.0 and v.frames([4]).shape == (1, 32, 32, 3)
    with pytest.raises(MediaError, match="no audio"):
        load_audio(str(folder))


def test_bad_media_files_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="video file not found") as e:
        VideoSource(str(tmp_path / "missing.mp4"))
    assert "missing.mp4" in str(e.value)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError, match="cannot decode video") as e:
        len(VideoSource(str(broken)))
    assert "broken.mp4" in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="broken|empty|cannot decode"):
        len(VideoSource(str(empty)))
    import av  # an "empty video": a container with an audio stream and no video frames at all
    with av.open(str(tmp_path / "novideo.mp4"), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    with pytest.raises(MediaError, match="cannot decode video") as e:
        len(VideoSource(str(tmp_path / "novideo.mp4")))
    assert "novideo.mp4" in str(e.value)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(MediaError, match="no .jpg"):
        VideoSource(str(tmp_path / "empty_dir"))
    silent = str(tmp_path / "noaudio.mp4")
    write_video(silent, frames(5), 10.0)
    with pytest.raises(MediaError, match="audio") as e:
        load_audio(silent)
    assert "noaudio.mp4" in str(e.value)
    soundfile.write(str(tmp_path / "zero.wav"), np.zeros((0, 1), dtype=np.float32), 16000)
    write_video(str(tmp_path / "zero.mp4"), frames(3), 10.0)
    with pytest.raises(MediaError, match="empty"):
        load_audio(str(tmp_path / "zero.mp4"))


def test_failed_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "v.mp4"

    def bad_frames():
        yield np.zeros((16, 16, 3), np.uint8)
        raise RuntimeError("camera unplugged")
    with pytest.raises(RuntimeError, match="camera"):
        write_video(str(path), bad_frames(), 10.0)
    assert os.listdir(tmp_path) == []


def test_a_frame_folder_is_numbered_frames_of_one_size(tmp_path):
    from PIL import Image

    from aver_fast.data.media import content_digest, frame_files

    folder = tmp_path / "v"
    folder.mkdir()
    for i, f in enumerate(frames(12)):
        Image.fromarray(f).save(folder / f"{i + 1}.png")  # numbered without zero padding: sorted by number
    (folder / "notes.txt").write_text("ignored")
    assert [os.path.basename(f) for f in frame_files(str(folder))] == [f"{i}.png" for i in range(1, 13)]
    digest = content_digest(str(folder))
    Image.new("RGB", (40, 32)).save(folder / "13.png")
    assert content_digest(str(folder)) != digest
    with pytest.raises(MediaError, match=r"13.png: is 40x32 but the folder's first frame is 32x32"):
        VideoSource(str(folder)).frames(np.arange(13))
    Image.new("RGB", (32, 32)).save(folder / "cover.jpg")
    with pytest.raises(MediaError, match="cover.jpg: is not a numbered frame"):
        VideoSource(str(folder))
    os.remove(folder / "cover.jpg")
    Image.new("RGB", (32, 32)).save(folder / "0013.jpg")
    with pytest.raises(MediaError, match=r"13.png: has the number of .*0013.jpg: two frames 13"):
        VideoSource(str(folder))


def test_the_content_digest_tells_videos_of_one_length_apart(tmp_path):
    from aver_fast.data.media import content_digest

    a, b = str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")
    write_video(a, frames(10), 10.0)
    write_video(b, frames(10)[::-1], 10.0)
    assert content_digest(a) == content_digest(a) != content_digest(b)


@pytest.mark.parametrize("kind", ["mp4", "folder"])
def test_a_stream_converts_only_the_frames_kept_and_the_last(tmp_path, kind):
    """read(k, keep): kept frames as a plain read gives them, the others zero, the last delivered always converted
    (also when the video ends before k frames); a mask of the wrong length is named."""
    from PIL import Image

    from aver_fast.data.media import FrameStream

    pictures = [np.full((32, 32, 3), 10 + 20 * i, np.uint8) for i in range(7)]
    path = str(tmp_path / "v.mp4")
    if kind == "mp4":
        write_video(path, pictures, 10.0)
    else:
        path = str(tmp_path / "frames")
        os.mkdir(path)
        for i, f in enumerate(pictures):
            Image.fromarray(f).save(f"{path}/{i + 1:05d}.png")
    every = FrameStream(path).read(7)
    stream = FrameStream(path)
    first = stream.read(4, np.array([True, False, True, False]))
    np.testing.assert_array_equal(first[[0, 2, 3]], every[[0, 2, 3]])
    assert not first[1].any() and every[1].any()
    rest = stream.read(5, np.zeros(5, bool))  # 3 frames left: the last of them is converted
    assert rest.shape == (3, 32, 32, 3) and not rest[:2].any()
    np.testing.assert_array_equal(rest[2], every[6])
    assert stream.read(2, np.ones(2, bool)).shape[0] == 0
    with pytest.raises(ValueError, match="bool mask of the 3 frames"):
        FrameStream(path).read(3, np.ones(2, bool))
