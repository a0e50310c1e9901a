"""Fixtures of the VA-RED2 tests: one micro SynthActions set, generated once and only read."""

from __future__ import annotations

import pytest

from effvid.data.synthetic import SynthPreset, generate


@pytest.fixture(scope="session")
def synth_micro(tmp_path_factory: pytest.TempPathFactory):
    """SynthActions with 3 videos per class (16 classes) of 32x32 pixels and 16-20 frames."""
    preset = SynthPreset("vared2-micro", videos_per_class=3, size=32, min_frames=16, max_frames=20)
    return generate(tmp_path_factory.mktemp("synth-vared2"), preset=preset, seed=0, workers=2)
