import numpy as np
import pytest

from aver_fast.data import MediaError, read_va, write_va


def test_round_trip_and_invalid_marker(tmp_path):
    va = np.array([[0.1, -0.2], [-5, -5], [1.0, -1.0]], dtype=np.float32)
    write_va(tmp_path / "v.txt", va)
    assert (tmp_path / "v.txt").read_text().startswith("valence,arousal\n")
    np.testing.assert_allclose(read_va(tmp_path / "v.txt"), va)


@pytest.mark.parametrize("text, problem", [
    ("v,a\n0.1,0.2\n", "header"),
    ("valence,arousal\n0.1;0.2\n", "line 2"),
    ("valence,arousal\n0.1,0.2,0.3\n", "line 2"),
    ("valence,arousal\n1.5,0.2\n", "outside"),
    ("valence,arousal\n", "no frames"),
])
def test_bad_files_name_the_file_and_problem(tmp_path, text, problem):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(MediaError, match=problem) as e:
        read_va(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        read_va(tmp_path / "none.txt")


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfvalence,arousal\n0.1,0.2\n")
    np.testing.assert_allclose(read_va(path), [[0.1, 0.2]])


@pytest.mark.parametrize("content", [
    "valence,arousal\n0.1,0.2\n# café\n".encode("latin-1"),  # another encoding
    b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\xff\xfe\x80",  # an mp4 saved under the annotation's name
], ids=["latin-1", "binary"])
def test_non_utf8_files_name_the_file(tmp_path, content):
    path = tmp_path / "v.txt"
    path.write_bytes(content)
    with pytest.raises(MediaError, match="not UTF-8 text") as e:
        read_va(path)
    assert str(path) in str(e.value)
