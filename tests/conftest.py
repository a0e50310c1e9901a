"""Shared test fixtures: small real videos whose frames encode their own index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from effvid.data.video_writer import write_video

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


@pytest.fixture
def make_index_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing an H.264 MP4 of ``num_frames`` index-encoded frames; returns its path."""

    def make(name: str = "index.mp4", num_frames: int = 64, *, fps: float = 25.0, gop: int = 8,
             height: int = 48) -> Path:
        path = tmp_path / name
        write_video(path, (index_frame(i, height) for i in range(num_frames)), fps=fps, gop=gop)
        return path

    return make


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
