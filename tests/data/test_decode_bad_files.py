"""Each kind of bad video raises VideoError(path, reason) with its documented reason, for both backends."""

from __future__ import annotations

import struct
from importlib.util import find_spec
from pathlib import Path

import av
import numpy as np
import pytest

from effvid.data.check import check_video
from effvid.data.decode import open_video
from effvid.errors import VideoError
from videotools import decode_index

WITH_DECORD = pytest.param(
    "decord", marks=pytest.mark.skipif(find_spec("decord") is None, reason="decord is not installed")
)


def missing(tmp_path: Path, make_index_video) -> Path:
    return tmp_path / "missing.mp4"


def zero_bytes(tmp_path: Path, make_index_video) -> Path:
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


def truncated(tmp_path: Path, make_index_video) -> Path:
    """A valid MP4 cut in half (its index, written last, is lost)."""
    data = make_index_video("whole.mp4", num_frames=64).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_faststart(tmp_path: Path, make_index_video) -> Path:
    """An MP4 with its index first, cut in half: it opens, but its second half is gone."""
    whole = tmp_path / "faststart.mp4"
    with av.open(str(whole), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (64, 48, 64, 3), dtype=np.uint8)
        for image in noise:  # noise keeps every frame large, so half the file holds many frames
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = whole.read_bytes()
    path = tmp_path / "faststart_cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(tmp_path: Path, make_index_video) -> Path:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def audio_only(tmp_path: Path, make_index_video) -> Path:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for k in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def unsupported_codec(tmp_path: Path, make_index_video) -> Path:
    """An IVF file whose fourcc names no codec FFmpeg can decode."""
    path = tmp_path / "unknown.ivf"
    header = b"DKIF" + struct.pack("<HH4sHHIIII", 0, 32, b"XQZW", 64, 48, 25, 1, 3, 0)
    packets = b"".join(struct.pack("<IQ", 16, i) + bytes(range(16)) for i in range(3))
    path.write_bytes(header + packets)
    return path


def undecodable(tmp_path: Path, make_index_video) -> Path:
    """A well-formed MP4 whose compressed frames are all zero bytes."""
    data = bytearray(make_index_video("source.mp4", num_frames=16).read_bytes())
    start = data.find(b"mdat")
    size = int.from_bytes(data[start - 4 : start], "big")
    data[start + 4 : start - 4 + size] = bytes(size - 8)
    path = tmp_path / "zeroed.mp4"
    path.write_bytes(bytes(data))
    return path


# kind -> reason, or the start of the reason, per backend
BAD_FILES = {
    missing: {"pyav": "file not found", "decord": "file not found"},
    zero_bytes: {"pyav": "empty file (0 bytes)", "decord": "empty file (0 bytes)"},
    truncated: {"pyav": "cannot open: ", "decord": "cannot open: "},
    truncated_faststart: {"pyav": "cannot decode: ", "decord": "cannot "},
    garbage: {"pyav": "cannot open: ", "decord": "cannot open: "},
    audio_only: {"pyav": "no video stream", "decord": "no video stream"},
    unsupported_codec: {"pyav": "unsupported codec", "decord": "unsupported codec"},
    undecodable: {"pyav": "cannot decode: ", "decord": "cannot "},
}


@pytest.mark.parametrize("backend", ["pyav", WITH_DECORD])
@pytest.mark.parametrize("make_bad", list(BAD_FILES), ids=lambda make: make.__name__)
def test_bad_file_raises_video_error_with_reason(tmp_path, make_index_video, make_bad, backend):
    path = make_bad(tmp_path, make_index_video)
    with pytest.raises(VideoError) as err:
        check_video(str(path), backend=backend)  # opens, then decodes the first and last frames
    assert err.value.path == str(path)
    assert str(err.value).startswith(str(path))
    assert err.value.reason.startswith(BAD_FILES[make_bad][backend]), err.value.reason


def test_truncated_file_with_index_still_reads_its_first_half(tmp_path, make_index_video):
    path = truncated_faststart(tmp_path, make_index_video)
    with open_video(path) as reader:
        assert reader.info.num_frames == 64  # the header describes the whole file
        first = reader.get_frames([0, 5])
        assert first.shape == (2, 48, 64, 3)
        with pytest.raises(VideoError):
            reader.get_frames([63])


def test_folder_given_to_video_backend(tmp_path):
    with pytest.raises(VideoError, match="is a folder"):
        open_video(tmp_path, "pyav")


@pytest.mark.parametrize("backend", ["pyav", WITH_DECORD])
def test_video_shorter_than_a_clip_is_not_an_error(make_index_video, backend):
    # Repeating the last frame is the sampler's rule; the reader serves repeated indices.
    with open_video(make_index_video(num_frames=3, gop=2), backend) as reader:
        frames = reader.get_frames([0, 1, 2, 2, 2, 2])
    assert [decode_index(frame) for frame in frames] == [0, 1, 2, 2, 2, 2]
