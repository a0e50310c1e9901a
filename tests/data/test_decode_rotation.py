"""A video stored sideways with a display rotation (a phone recording held upright) decodes upright,
and VideoInfo gives its displayed size.

The files are written with PyAV's ``VideoStream.set_display_rotation`` (a counter-clockwise angle,
the convention ``VideoFrame.rotation`` reads back), which stores the display matrix in the track
header (MP4/MOV ``tkhd``) or the Matroska projection: the same bytes a phone writes.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import av
import numpy as np
import pytest

from effvid.data.decode import open_video, probe_video
from effvid.data.video_writer import write_video
from videotools import decode_index, index_frame

NUM_FRAMES = 24
BACKENDS = ["pyav", pytest.param("decord", marks=pytest.mark.skipif(find_spec("decord") is None,
                                                                    reason="decord is not installed"))]


def upright(index: int) -> np.ndarray:
    """The frame as it should be seen: 64 rows x 96 columns of index bars, plus a corner mark.

    (decord 0.6 cannot decode 48-pixel-wide frames, so no side is 48.)"""
    frame = index_frame(index, height=64)
    frame[:8, -8:] = (255, 0, 0)  # red top-right corner: tells a turn from a mirror
    return frame


def write_rotated(path: Path, degrees: int, *, gop: int = 8) -> Path:
    """Frames stored turned by ``-degrees`` with a display rotation of ``degrees`` (counter-clockwise)."""
    turns = degrees // 90
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stored = np.rot90(upright(0), -turns)
        stream.height, stream.width = stored.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "g": str(gop)}
        stream.set_display_rotation(degrees)
        for index in range(NUM_FRAMES):
            image = np.ascontiguousarray(np.rot90(upright(index), -turns))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def assert_upright(frames: np.ndarray, indices: list[int]) -> None:
    assert frames.shape == (len(indices), 64, 96, 3)
    assert [decode_index(frame) for frame in frames] == indices
    for frame in frames:
        corner = frame[:8, -8:].reshape(-1, 3).mean(axis=0)
        assert corner[0] > 180 and corner[1] < 80, "the red mark is not in the top-right corner"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("degrees", [90, 180, 270, -90])
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_rotated_video_decodes_upright(tmp_path, degrees, suffix, backend):
    path = write_rotated(tmp_path / f"phone{suffix}", degrees)
    with av.open(str(path)) as container:  # FFmpeg itself sees the rotation we wrote
        assert next(container.decode(video=0)).rotation % 360 == degrees % 360
    with open_video(path, backend) as reader:
        assert (reader.info.width, reader.info.height) == (96, 64)
        assert_upright(reader.get_frames([0, 5, 17, NUM_FRAMES - 1]), [0, 5, 17, NUM_FRAMES - 1])
        assert_upright(reader.get_frames([20, 3]), [20, 3])  # a seek backwards keeps the turn


def test_unrotated_video_is_unchanged(tmp_path):
    path = tmp_path / "plain.mp4"
    write_video(path, (upright(i) for i in range(NUM_FRAMES)), crf=10)
    info = probe_video(path)
    assert (info.width, info.height) == (96, 64)
    with open_video(path) as reader:
        assert_upright(reader.get_frames([0, 12]), [0, 12])


def test_rotated_mp4_header_needs_no_decoding(tmp_path):
    """MP4/MOV: the header's tkhd matrix gives the turn before any frame is decoded."""
    from effvid.data.decode import _mov_rotation

    for degrees, turns in ((0, 0), (90, 1), (180, 2), (270, 3), (-90, 3)):
        path = write_rotated(tmp_path / f"r{degrees}.mp4", degrees) if degrees else tmp_path / "plain.mp4"
        if not degrees:
            write_video(path, (upright(i) for i in range(4)))
        with av.open(str(path)) as container:
            track = container.streams.video[0].id
        assert _mov_rotation(str(path), track) == turns
