"""Shared test fixtures: small real videos whose frames encode their own index, a micro SynthActions set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from effvid.data.synthetic import SynthPreset, generate
from effvid.data.video_writer import write_video
from videotools import index_frame


@pytest.fixture
def make_index_video(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing an H.264 MP4 of ``num_frames`` index-encoded frames; returns its path."""

    def make(name: str = "index.mp4", num_frames: int = 64, *, fps: float = 25.0, gop: int = 8,
             height: int = 48) -> Path:
        path = tmp_path / name
        write_video(path, (index_frame(i, height) for i in range(num_frames)), fps=fps, gop=gop)
        return path

    return make


@pytest.fixture(scope="session")
def synth_micro(tmp_path_factory: pytest.TempPathFactory):
    """SynthActions with 3 videos per class (32 train, 16 val) of 32x32 pixels and 16-20 frames."""
    preset = SynthPreset("micro", videos_per_class=3, size=32, min_frames=16, max_frames=20)
    return generate(tmp_path_factory.mktemp("synth-micro"), preset=preset, seed=0, workers=2)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest single-threaded on a shared 2-core CPU (no spin-waiting threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture
def opens(monkeypatch) -> list[str]:
    """The paths the data layer's datasets call ``open_video`` with, in order."""
    from effvid.data import dataset as dataset_module

    seen: list[str] = []
    real = dataset_module.open_video

    def counting(path, *args, **kwargs):
        seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "open_video", counting)
    return seen
