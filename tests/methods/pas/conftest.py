"""Fixtures of the PAS tests: one small SynthActions set, generated once and only read."""

from __future__ import annotations

from pathlib import Path

import pytest

from effvid.data.synthetic.generate import PRESETS, generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthActions-tiny with 4 videos per class (``train.txt``, ``val.txt``); tests must not write into it."""
    out = tmp_path_factory.mktemp("synth-pas")
    generate(out, preset=PRESETS["tiny"].replace(name="pas-tiny", videos_per_class=4), workers=2)
    return out
