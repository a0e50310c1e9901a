"""Test helpers: frames that encode their own index, readable back after lossy compression."""

from __future__ import annotations

import numpy as np

INDEX_BITS = 12
BAR = 8  # pixels per bit: wide bars survive H.264 and JPEG compression


def index_frame(index: int, height: int = 48, width: int = INDEX_BITS * BAR) -> np.ndarray:
    """An RGB frame whose vertical bars spell ``index`` in binary (bit 0 leftmost)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for bit in range(INDEX_BITS):
        if index >> bit & 1:
            frame[:, bit * BAR : (bit + 1) * BAR] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of :func:`index_frame` for a decoded ``(H, W, 3)`` frame."""
    centres = frame[:, BAR // 2 :: BAR][:, :INDEX_BITS].mean(axis=(0, 2))
    return int(sum(1 << bit for bit, value in enumerate(centres) if value > 127))


def list_annotation(paths, num_classes: int = 5, *, source: str | None = None):
    """An in-memory mmaction list of ``paths``, video ``i`` labelled ``i % num_classes``."""
    from effvid.data.annotations import Annotation, VideoRecord

    records = tuple(VideoRecord(path=str(p), label=i % num_classes, video_id=str(p)) for i, p in enumerate(paths))
    names = tuple(f"c{i}" for i in range(num_classes))
    return Annotation(records=records, class_names=names, multilabel=False, format="mmaction", source=source)
