"""Exact frame decoding with seeks for the pyav and decord backends, frame counts, frame folders."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from effvid.data.decode import FRAME_FOLDER_FPS, open_video, probe_video
from effvid.data.video_writer import write_video
from effvid.errors import ConfigError, VideoError
from videotools import decode_index, index_frame

WITH_DECORD = pytest.param(
    "decord", marks=pytest.mark.skipif(find_spec("decord") is None, reason="decord is not installed")
)
VIDEO_BACKENDS = ("pyav", WITH_DECORD)
# Late indices first, repeats, single frames, the last frame, runs inside and across GOPs.
INDEX_SETS = (
    [63],
    [0],
    [40, 3, 3, 17, 63, 0],
    [31, 32, 33, 34, 35, 36, 37, 38],
    [62, 63, 1, 62],
    [9, 9, 9],
)


def write_with_pyav(path: Path, num_frames: int, *, codec: str = "libx264", options: dict | None = None,
                    pix_fmt: str = "yuv420p") -> Path:
    """Encode index frames into any container PyAV can write (the suffix picks it)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 48, pix_fmt
        stream.options = options or {}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24").reformat(format=pix_fmt)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def read_indices(reader, indices) -> list[int]:
    frames = reader.get_frames(indices)
    assert frames.dtype == np.uint8 and frames.shape == (len(indices), 48, 96, 3)
    return [decode_index(frame) for frame in frames]


@pytest.mark.parametrize("backend", VIDEO_BACKENDS)
def test_every_requested_index_comes_back_after_seeks(make_index_video, backend):
    path = make_index_video(num_frames=64, gop=8)
    with open_video(path, backend) as reader:
        for indices in INDEX_SETS:  # one reader, so each set seeks from wherever the last one ended
            assert read_indices(reader, indices) == indices


@pytest.mark.parametrize("backend", VIDEO_BACKENDS)
def test_info_reports_count_rate_duration_and_size(make_index_video, backend):
    info = probe_video(make_index_video(num_frames=50, fps=30.0, gop=8), backend)
    assert (info.num_frames, info.width, info.height, info.codec) == (50, 96, 48, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(50 / 30.0)


@pytest.mark.parametrize("backend", VIDEO_BACKENDS)
@pytest.mark.parametrize("suffix,codec", [(".mkv", "libx264"), (".webm", "libvpx")])
def test_container_without_frame_count_reports_true_count(tmp_path, backend, suffix, codec):
    path = write_with_pyav(tmp_path / f"nocount{suffix}", 37, codec=codec, options={"g": "8"})
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the header really has no count
    with open_video(path, backend) as reader:
        assert reader.info.num_frames == 37
        assert read_indices(reader, [36, 0, 20, 20]) == [36, 0, 20, 20]
        with pytest.raises(VideoError) as err:
            reader.get_frames([37])
    assert "frame 37" in err.value.reason and "37 frames" in err.value.reason


def test_header_with_wrong_frame_count_is_recounted(tmp_path):
    path = write_with_pyav(tmp_path / "good.avi", 40, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    for chunk, offset in ((b"avih", 16), (b"strh", 32)):  # total frames in the AVI main and stream headers
        at = data.find(chunk) + 8 + offset
        assert int.from_bytes(data[at:at + 4], "little") == 40
        data[at:at + 4] = (100).to_bytes(4, "little")
    lying = tmp_path / "lying.avi"
    lying.write_bytes(bytes(data))
    with av.open(str(lying)) as container:
        assert container.streams.video[0].frames == 100  # the header now lies
    with open_video(lying) as reader:
        assert reader.info.num_frames == 40
        assert read_indices(reader, [39, 12]) == [39, 12]


def test_late_landing_seek_falls_back_to_exact_frames(tmp_path):
    # MPEG-TS has no index: FFmpeg's seek lands on a packet near the target, often after it.
    path = write_with_pyav(tmp_path / "stream.ts", 120, options={"g": "30"})
    rng = np.random.default_rng(0)
    with open_video(path) as reader:
        assert reader.info.num_frames == 120
        for _ in range(12):
            indices = [int(i) for i in rng.integers(0, 120, size=5)]
            assert read_indices(reader, indices) == indices


def test_decode_threads_setting_keeps_frames_exact(make_index_video):
    path = make_index_video(num_frames=40, gop=8)
    for threads in (1, 2):
        with open_video(path, "pyav", threads=threads) as reader:
            assert read_indices(reader, [39, 8, 7]) == [39, 8, 7]


def test_index_past_end_names_index_and_count(make_index_video):
    with open_video(make_index_video(num_frames=20)) as reader:
        with pytest.raises(VideoError) as err:
            reader.get_frames([3, 25])
    assert "frame 25" in err.value.reason and "20 frames" in err.value.reason


def write_frame_folder(folder: Path, num_frames: int, template: str = "img_{:05d}.jpg") -> Path:
    folder.mkdir(parents=True)
    for i in range(num_frames):
        Image.fromarray(index_frame(i)).save(folder / template.format(i + 1), quality=95)
    return folder


def test_frame_folder_reads_one_based_jpegs(tmp_path):
    folder = write_frame_folder(tmp_path / "video1", 12)
    with open_video(folder, "frames") as reader:
        assert reader.info.num_frames == 12
        assert (reader.info.width, reader.info.height) == (96, 48)
        assert reader.info.fps == FRAME_FOLDER_FPS
        assert read_indices(reader, [11, 0, 5, 5]) == [11, 0, 5, 5]


def test_frame_folder_custom_template_and_stated_count(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 6, template="frame{:04d}.jpg")
    with open_video(folder, "frames", frame_template="frame{:04d}.jpg", num_frames=6) as reader:
        assert read_indices(reader, [5, 2]) == [5, 2]
    # A stated count larger than the folder: the missing file is named when it is asked for.
    with open_video(folder, "frames", frame_template="frame{:04d}.jpg", num_frames=8) as reader:
        with pytest.raises(VideoError) as err:
            reader.get_frames([7])
    assert "frame0008.jpg" in err.value.reason


def test_frame_folder_without_matching_frames(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 3, template="frame{:04d}.jpg")
    with pytest.raises(VideoError) as err:
        open_video(folder, "frames")
    assert "img_00001.jpg" in err.value.reason
    with pytest.raises(VideoError, match="frame folder not found"):
        open_video(tmp_path / "absent", "frames")


def test_unknown_backend_is_a_config_error(make_index_video):
    with pytest.raises(ConfigError, match="opencv"):
        open_video(make_index_video(num_frames=4), "opencv")


def test_pyav_threads_the_decoder_only_for_large_frames(tmp_path):
    small = tmp_path / "small.mp4"
    large = tmp_path / "large.mp4"
    write_video(small, np.zeros((2, 48, 96, 3), np.uint8))
    write_video(large, np.zeros((2, 360, 640, 3), np.uint8))
    with open_video(small, "pyav") as reader:  # starting threads per file costs more than they save
        assert reader._container.streams.video[0].codec_context.thread_count == 1
    with open_video(large, "pyav") as reader:
        assert reader._container.streams.video[0].codec_context.thread_count != 1
    with open_video(small, "pyav", threads=3) as reader:  # an explicit count is kept
        assert reader._container.streams.video[0].codec_context.thread_count == 3
