"""Reading the frames a clip needs from a video file or a folder of frames.

Three backends, chosen by name (:data:`BACKENDS`):

- ``"pyav"`` (default): seeks to the keyframe before the first wanted frame, decodes forward with
  the codec's frame threading and stops after the last wanted frame. Each decoded frame is placed
  by its timestamp; a seek that lands after the wanted frame (MPEG-TS, some B-frame files) is
  detected and retried 1, 4 and 16 seconds earlier, then from the start of the file, so the frames
  returned are always the frames asked for.
- ``"decord"`` (optional ``effvid[decord]`` extra): ``decord.VideoReader.get_batch``.
- ``"frames"``: a folder of images in the mmaction/TSN layout (``img_00001.jpg`` is frame 0),
  read with Pillow. A folder has no frame rate; :data:`FRAME_FOLDER_FPS` is reported.

Frame counts come from the container header where it is exact (the MP4/MOV sample table);
other containers (MKV, WebM, AVI, ...) have their packets counted once per process, since their
headers often lack the count or state a wrong one. Every unreadable video raises
:class:`~effvid.errors.VideoError` with a short reason.

Display rotation (a phone video recorded upright is stored sideways with a display matrix that
says how to turn it): the video backends return frames as displayed, turned by the nearest
multiple of 90 degrees, and :class:`VideoInfo` gives the displayed width and height. PyAV turns
each frame by its own display matrix (``VideoFrame.rotation``); the header's rotation, which
sets ``VideoInfo``, is read from the track header of MP4/MOV files (``tkhd`` times ``mvhd``
matrix, as FFmpeg does) and, for other containers, from the first decoded frame once per file
per process. decord turns MP4/MOV frames itself (its FFmpeg reads their rotation); effvid turns
the others by the header's rotation. Mirrored display matrices are turned but not
mirrored; angles more than 1 degree away from a multiple of 90 are ignored.
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from effvid.errors import ConfigError, EffvidError, VideoError

BACKENDS: tuple[str, ...] = ("pyav", "decord", "frames")
FRAME_FOLDER_FPS = 30.0
# Containers whose header frame count is the sample table itself, hence exact.
_EXACT_COUNT_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
_SEEK_BACK_SECONDS = (0, 1, 4, 16)
_THREADED_MIN_PIXELS = 640 * 360
"""PyAV decodes frames this large (or larger) with the codec's frame threading when ``threads=0``.
Smaller ones decode on one thread: starting the codec's threads for every opened file cost more
than they saved (SynthActions' 64-pixel clips: 3x the clips per second on one thread)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a video before decoding it."""

    path: str
    num_frames: int
    fps: float
    duration: float  # seconds
    width: int  # as displayed: a stream turned 90 degrees by its display matrix has its sides swapped
    height: int
    codec: str | None


class VideoReader(Protocol):
    """An open video; use it as a context manager or call :meth:`close`."""

    info: VideoInfo

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) as uint8 ``(len(indices), H, W, 3)`` RGB."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


def open_video(
    path: str | os.PathLike[str],
    backend: str = "pyav",
    *,
    threads: int = 0,
    frame_template: str = "img_{:05d}.jpg",
    num_frames: int | None = None,
) -> VideoReader:
    """Open ``path`` with ``backend``; raises :class:`VideoError` when it cannot be read.

    ``threads`` is the decoder's thread count (0: the codec decides, for PyAV only on frames of
    at least 640x360 and one thread below, where starting threads costs more than they save).
    ``frame_template`` and ``num_frames`` (the count an annotation states) are used by the
    ``"frames"`` backend only; without ``num_frames`` it counts the consecutive frame files from 1.
    """
    path = os.fspath(path)
    if backend == "frames":
        return FrameFolderReader(path, template=frame_template, num_frames=num_frames)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    _check_file(path)
    if backend == "decord":
        return DecordVideoReader(path, threads=threads)
    return PyAVVideoReader(path, threads=threads)


def probe_video(path: str | os.PathLike[str], backend: str = "pyav", **kw: object) -> VideoInfo:
    """The :class:`VideoInfo` of ``path`` (no frames decoded beyond what the backend needs to open)."""
    with open_video(path, backend, **kw) as reader:
        return reader.info


class _Reader:
    """Index bookkeeping shared by the backends; subclasses implement ``_read(sorted_unique)``."""

    path: str
    info: VideoInfo

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` (any order, repeats allowed) as uint8 ``(len(indices), H, W, 3)`` RGB."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            return np.zeros((0, self.info.height, self.info.width, 3), dtype=np.uint8)
        if wanted.min() < 0:
            raise ValueError(f"{self.path}: negative frame index {int(wanted.min())}")
        unique = np.unique(wanted)
        if unique[-1] >= self.info.num_frames:
            raise VideoError(self.path, _past_end(int(unique[-1]), self.info.num_frames))
        frames = self._read([int(i) for i in unique])
        position = np.searchsorted(unique, wanted)
        return frames[position]

    def _read(self, unique: list[int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; the reader cannot be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LateSeek(Exception):
    """A seek landed after the first wanted frame."""


class PyAVVideoReader(_Reader):
    """The default backend: PyAV with keyframe seeking and frame threading."""

    def __init__(self, path: str, *, threads: int = 0) -> None:
        self.path = path
        self.threads = threads
        self._reformatter = VideoReformatter()
        self._container = self._open()
        try:
            stream = self._container.streams.video[0]
            self.rotation = _header_rotation(path, self._container, stream)
            self.info = self._read_info(stream)
        except BaseException:
            self._container.close()
            raise

    def _open(self):
        """Open the container and prepare its first video stream for threaded decoding."""
        container = _open_container(self.path)
        try:
            stream = _video_stream(container, self.path)
            context = stream.codec_context
            small = context.width * context.height < _THREADED_MIN_PIXELS
            stream.thread_type = "AUTO"
            context.thread_count = 1 if self.threads == 0 and small else self.threads
        except BaseException:
            container.close()
            raise
        self._fresh = True  # nothing demuxed yet: decoding starts at the first frame
        return container

    def _read_info(self, stream) -> VideoInfo:
        fps = _frame_rate(stream)
        if fps is None:
            raise VideoError(self.path, "no frame rate in the header")
        self._time_base = float(stream.time_base)
        self._start = stream.start_time or 0
        num_frames = stream.frames
        exact = _EXACT_COUNT_FORMATS.intersection(self._container.format.name.split(","))
        if not (exact and num_frames > 0):
            stat = os.stat(self.path)
            num_frames = _count_packets(self.path, stat.st_size, stat.st_mtime_ns)
        if num_frames < 1:
            raise VideoError(self.path, "no video frames")
        width, height = _displayed(stream.codec_context.width, stream.codec_context.height, self.rotation)
        return VideoInfo(
            path=self.path,
            num_frames=num_frames,
            fps=fps,
            duration=num_frames / fps,
            width=width,
            height=height,
            codec=stream.codec_context.name,
        )

    def _read(self, unique: list[int]) -> np.ndarray:
        # Seek to the wanted frame; if the seek lands after it, seek 1, 4 and 16 seconds earlier,
        # then decode from the start.
        for seconds in _SEEK_BACK_SECONDS:
            target = unique[0] - round(seconds * self.info.fps)
            if target <= 0:
                break
            try:
                return self._decode(unique, seek_to=target)
            except _LateSeek:
                continue
        return self._decode(unique, seek_to=None)

    def _decode(self, unique: list[int], seek_to: int | None) -> np.ndarray:
        """Decode forward from a seek to frame ``seek_to`` (None: from the first frame)."""
        if seek_to is None:
            if not self._fresh:
                self._container.close()
                self._container = self._open()
        else:
            target = self._start + int(seek_to / self.info.fps / self._time_base)
            try:
                self._container.seek(target, stream=self._container.streams.video[0], backward=True,
                                     any_frame=False)
            except av.FFmpegError:
                raise _LateSeek from None
        self._fresh = False
        out = np.empty((len(unique), self.info.height, self.info.width, 3), dtype=np.uint8)
        filled = 0
        previous = None  # (index, frame) of the last decoded frame
        stream = self._container.streams.video[0]
        try:
            for frame in self._container.decode(stream):
                if previous is None and seek_to is None:
                    index = 0  # the first frame defines the start of the timeline
                    if frame.pts is not None:
                        self._start = frame.pts
                elif frame.pts is not None:
                    index = self._index(frame.pts)
                elif previous is not None:
                    index = previous[0] + 1
                else:
                    raise _LateSeek  # no timestamp after a seek: only counting from the start is exact
                if index > unique[filled] and previous is None:
                    raise _LateSeek
                # A wanted index between two decoded frames (variable frame rate) is the frame shown
                # at that time: the earlier one.
                while filled < len(unique) and unique[filled] < index:
                    out[filled] = self._rgb(previous[1])
                    filled += 1
                while filled < len(unique) and unique[filled] == index:
                    out[filled] = self._rgb(frame)
                    filled += 1
                if filled == len(unique):
                    return out
                previous = (index, frame)
        except av.FFmpegError as err:
            raise VideoError(self.path, f"cannot decode: {_av_message(err)}") from None
        if previous is None:
            if seek_to is not None:
                raise _LateSeek  # the seek went past the last frame
            raise VideoError(self.path, "no decodable video frames")
        raise VideoError(self.path, _past_end(unique[filled], previous[0] + 1, decodable=True))

    def _rgb(self, frame) -> np.ndarray:
        # One colour-conversion context per reader, single-threaded: PyAV's frame.to_ndarray(format=...)
        # builds a new context with automatic threads for every frame, which costs 0.2-1.5 ms on a
        # 64-pixel frame (measured) against 0.006 ms here; the pixels are identical.
        array = self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
        turns = _quarter_turns(frame.rotation)
        if turns:
            array = np.rot90(array, turns)
        if array.shape[:2] != (self.info.height, self.info.width):
            turned = f" turned {turns * 90} degrees for display," if turns else ""
            raise VideoError(self.path, f"frame size changes mid-stream ({array.shape[1]}x{array.shape[0]},{turned} "
                                        f"header says {self.info.width}x{self.info.height})")
        return array

    def _index(self, pts: int) -> int:
        return math.floor((pts - self._start) * self._time_base * self.info.fps + 0.5)

    def close(self) -> None:
        self._container.close()


class DecordVideoReader(_Reader):
    """The decord backend (``pip install effvid[decord]``).

    The header (size, codec, and the reason when a file is unreadable) is read with PyAV; frames
    come from ``decord.VideoReader.get_batch``.
    """

    def __init__(self, path: str, *, threads: int = 0) -> None:
        try:
            import decord
        except ImportError:
            raise EffvidError(
                "the decord video backend needs the decord package (pip install 'effvid[decord]'); "
                "or use backend 'pyav'"
            ) from None
        self.path = path
        with _open_container(path) as container:
            stream = _video_stream(container, path)
            context = stream.codec_context
            self.rotation = _header_rotation(path, container, stream)
            width, height = _displayed(context.width, context.height, self.rotation)
            codec = context.name
            # decord turns frames itself when its FFmpeg (4.1 in decord 0.6) sees the rotation in the
            # stream's metadata or side data, which it does for MP4/MOV only
            mov = _EXACT_COUNT_FORMATS.intersection(container.format.name.split(","))
            self._turns = 0 if mov else self.rotation
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        except (RuntimeError, decord.DECORDError) as err:
            raise VideoError(path, f"cannot open: {_decord_message(err)}") from None
        num_frames = len(self._reader)
        if num_frames < 1:
            raise VideoError(path, "no video frames")
        fps = float(self._reader.get_avg_fps())
        if not (fps > 0 and math.isfinite(fps)):
            raise VideoError(path, "no frame rate in the header")
        self.info = VideoInfo(path, num_frames, fps, num_frames / fps, width, height, codec)
        self._decord_error = decord.DECORDError

    def _read(self, unique: list[int]) -> np.ndarray:
        try:
            frames = self._reader.get_batch(unique).asnumpy()
        except (RuntimeError, self._decord_error) as err:
            raise VideoError(self.path, f"cannot decode: {_decord_message(err)}") from None
        if frames.shape[0] != len(unique):
            raise VideoError(self.path, f"cannot decode: got {frames.shape[0]} of {len(unique)} frames")
        if self._turns:
            frames = np.rot90(frames, self._turns, axes=(1, 2))
        if frames.shape[1:3] != (self.info.height, self.info.width):
            raise VideoError(self.path, f"decord returned {frames.shape[2]}x{frames.shape[1]} frames, the displayed "
                                        f"size is {self.info.width}x{self.info.height}")
        return frames

    def close(self) -> None:
        self._reader = None


class FrameFolderReader(_Reader):
    """A folder of images named by ``template`` with 1-based numbers (``img_00001.jpg`` = frame 0)."""

    def __init__(self, path: str, *, template: str = "img_{:05d}.jpg", num_frames: int | None = None) -> None:
        self.path = path
        self.template = template
        folder = Path(path)
        if not folder.exists():
            raise VideoError(path, "frame folder not found")
        if not folder.is_dir():
            raise VideoError(path, "not a folder of frames (use a video backend for video files)")
        if num_frames is None:
            names = set(os.listdir(folder))
            num_frames = 0
            while self._name(num_frames) in names:
                num_frames += 1
        if num_frames < 1:
            raise VideoError(path, f"no frames named like {self._name(0)}")
        first = self._load(0)
        height, width = first.shape[:2]
        self.info = VideoInfo(path, num_frames, FRAME_FOLDER_FPS, num_frames / FRAME_FOLDER_FPS, width, height, None)

    def _name(self, index: int) -> str:
        try:
            return self.template.format(index + 1)
        except (IndexError, KeyError, ValueError) as err:
            raise ConfigError(f"frame_template {self.template!r} cannot be filled with a frame number: {err}") from None

    def _load(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = Path(self.path, self._name(index))
        try:
            with Image.open(file) as image:
                return np.asarray(image.convert("RGB"))
        except FileNotFoundError:
            raise VideoError(self.path, f"missing frame file {file.name}") from None
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise VideoError(self.path, f"cannot decode frame file {file.name}: {err}") from None

    def _read(self, unique: list[int]) -> np.ndarray:
        frames = [self._load(index) for index in unique]
        shape = (self.info.height, self.info.width, 3)
        for index, frame in zip(unique, frames):
            if frame.shape != shape:
                raise VideoError(self.path, f"frame file {self._name(index)} is {frame.shape[1]}x{frame.shape[0]}, "
                                            f"the first frame is {shape[1]}x{shape[0]}")
        return np.stack(frames)


def _check_file(path: str) -> None:
    """Reasons a path cannot be a video file, found without opening it."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise VideoError(path, "file not found") from None
    except OSError as err:
        raise VideoError(path, f"cannot read: {err.strerror or err}") from None
    if os.path.isdir(path):
        raise VideoError(path, "is a folder, not a video file (use backend 'frames' for frame folders)")
    if stat.st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")


def _open_container(path: str):
    try:
        return av.open(path, metadata_errors="ignore")
    except av.FFmpegError as err:
        raise VideoError(path, f"cannot open: {_av_message(err)}") from None
    except OSError as err:
        raise VideoError(path, f"cannot read: {err.strerror or err}") from None


def _video_stream(container, path: str):
    """The first video stream, or VideoError when there is none or it cannot be decoded here."""
    if not container.streams.video:
        raise VideoError(path, "no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(path, "unsupported codec: this FFmpeg build has no decoder for the video stream")
    return stream


@functools.lru_cache(maxsize=4096)
def _count_packets(path: str, size: int, mtime_ns: int) -> int:
    """Video packets in ``path`` (one per frame), demuxed without decoding; cached per file version."""
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as err:
            raise VideoError(path, f"cannot read packets: {_av_message(err)}") from None


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise ``degrees`` as quarter turns 0..3; 0 for none, NaN, or an angle off the
    multiples of 90 by more than 1 degree."""
    if degrees is None or not math.isfinite(degrees):
        return 0
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) <= 1 else 0


def _displayed(width: int, height: int, turns: int) -> tuple[int, int]:
    """``(width, height)`` of a ``width x height`` picture turned ``turns`` quarter turns."""
    return (height, width) if turns % 2 else (width, height)


def _header_rotation(path: str, container, stream) -> int:
    """The display rotation of ``stream`` in quarter turns counter-clockwise (module docstring)."""
    if _EXACT_COUNT_FORMATS.intersection(container.format.name.split(",")):
        return _mov_rotation(path, stream.id)
    stat = os.stat(path)
    return _first_frame_rotation(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _first_frame_rotation(path: str, size: int, mtime_ns: int) -> int:
    """The display rotation of the first decodable frame (quarter turns); cached per file version."""
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stream.codec_context.thread_count = 1
        try:
            for frame in container.decode(stream):
                return _quarter_turns(frame.rotation)
        except av.FFmpegError:
            pass  # an undecodable file says so when its frames are read
    return 0


def _mov_rotation(path: str, track_id: int) -> int:
    """The display rotation (quarter turns) of track ``track_id`` of an MP4/MOV file: its ``tkhd``
    matrix times the movie's ``mvhd`` matrix, as FFmpeg's mov demuxer combines them; 0 when the
    header cannot be walked (FFmpeg opened the file, so that is a box layout we do not know)."""
    try:
        with open(path, "rb") as file:
            end = os.fstat(file.fileno()).st_size
            moov = next(((start, stop) for kind, start, stop in _boxes(file, 0, end) if kind == b"moov"), None)
            if moov is None:
                return 0
            movie = track = None
            for kind, start, stop in _boxes(file, *moov):
                if kind == b"mvhd":
                    movie = _box_matrix(file, start, stop, offsets=(36, 48))
                elif kind == b"trak" and track is None:
                    for child, child_start, child_stop in _boxes(file, start, stop):
                        if child == b"tkhd":
                            file.seek(child_start)
                            header = file.read(24)
                            version = header[0]
                            track_number = struct.unpack(">I", header[12:16] if version == 0 else header[20:24])[0]
                            if track_number == track_id:
                                track = _box_matrix(file, child_start, child_stop, offsets=(40, 52))
    except (OSError, struct.error, IndexError, ValueError):
        return 0
    if track is None:
        return 0
    matrix = track if movie is None else track @ movie
    scale_x, scale_y = math.hypot(matrix[0, 0], matrix[1, 0]), math.hypot(matrix[0, 1], matrix[1, 1])
    if scale_x == 0 or scale_y == 0:
        return 0
    # av_display_rotation_get(): counter-clockwise degrees
    return _quarter_turns(-math.degrees(math.atan2(matrix[0, 1] / scale_y, matrix[0, 0] / scale_x)))


def _boxes(file, start: int, end: int):
    """``(type, body start, end)`` of the ISO base media boxes between ``start`` and ``end``."""
    position = start
    while position + 8 <= end:
        file.seek(position)
        size, kind = struct.unpack(">I4s", file.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", file.read(8))[0], 16
        elif size == 0:
            size = end - position
        if size < header:
            return
        yield kind, position + header, min(position + size, end)
        position += size


def _box_matrix(file, start: int, stop: int, *, offsets: tuple[int, int]) -> np.ndarray:
    """The 3x3 transformation matrix of a full box (``mvhd``, ``tkhd``) at ``offsets[version]``."""
    file.seek(start)
    version = file.read(1)[0]
    offset = offsets[1 if version == 1 else 0]
    if start + offset + 36 > stop:
        raise ValueError("box too short for its matrix")
    file.seek(start + offset)
    values = struct.unpack(">9i", file.read(36))
    # a, b, u / c, d, v / x, y, w: 16.16 fixed point except u, v, w (2.30)
    return np.array([[values[3 * row + col] / (2**30 if col == 2 else 2**16) for col in range(3)] for row in range(3)])


def _frame_rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate.denominator and 0 < float(rate) < 10_000:
            return float(rate)
    return None


def _past_end(index: int, count: int, *, decodable: bool = False) -> str:
    what = "decodable frames" if decodable else "frames"
    return f"frame {index} requested but the video has {count} {what} (indices 0..{count - 1})"


def _av_message(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _decord_message(err: Exception) -> str:
    """The last line of a decord error without its log prefix and failed-check expression."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    message = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[-1])
    return re.sub(r"^Check failed: .*? vs\. .*?\) ", "", message)
