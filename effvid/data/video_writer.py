"""Writing H.264 MP4 files with PyAV (used by SynthActions, benchmarks and tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import av
import numpy as np

from effvid.io import atomic_file


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    crf: int = 18,
    gop: int = 32,
    preset: str = "veryfast",
    threads: int = 1,
) -> int:
    """Encode ``frames`` (each ``(H, W, 3)`` uint8 RGB, even H and W) to ``path``; return the count.

    The file is written next to its final name and renamed into place, so a reader never sees
    a half-written video. ``gop`` is the keyframe interval in frames.
    """
    count = 0
    with atomic_file(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                height, width = frame.shape[:2]
                stream = container.add_stream(codec, rate=_rate(fps))
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.thread_count = threads
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "g": str(gop), "preset": preset}
                else:
                    stream.options = {"g": str(gop)}
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
            count += 1
        if stream is None:
            raise ValueError(f"no frames to write to {path}")
        container.mux(stream.encode())
    return count


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
