"""Fixtures for the trainer, evaluation and CLI tests: tiny configs and the toy plugin method."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from effvid.config import deep_merge
from effvid.spec import ArchSpec

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "effvid_toy_skip.py"
"""The toy dynamic method (``toy_skip``), which effvid finds through its entry point."""

# R(2+1)D-18 at width 1/4, depth 1/2 (one block per stage), 4 frames of 32x32: about 6 MMACs.
TINY_MODEL = {"name": "r2plus1d_18", "num_frames": 4, "frame_stride": 2, "crop_size": 32, "width_mult": 0.25,
              "depth_mult": 0.5, "train_resize": [32, 32], "test_resize": 32}


@pytest.fixture
def tiny_spec() -> Callable[[int], ArchSpec]:
    """Factory: the ArchSpec of the tiny model with ``num_classes`` classes."""

    def make(num_classes: int = 16) -> ArchSpec:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_MODEL.items()}
        return ArchSpec(num_classes=num_classes, **fields)

    return make


@pytest.fixture
def subset_annotation(synth_micro, tmp_path: Path) -> Callable[[int], Path]:
    """Factory: an mmaction list of the first ``n`` training videos of :func:`synth_micro` (all 16 classes named)."""

    def make(n: int, name: str = "subset.txt") -> Path:
        root = synth_micro.root
        lines = synth_micro.annotations["train"].read_text().splitlines()[:n]
        path = tmp_path / name
        (tmp_path / "classes.txt").write_text(synth_micro.classes_file.read_text())
        path.write_text("".join(f"{root / line.split()[0]} {line.split()[1]}\n" for line in lines))
        return path

    return make


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a training YAML for the tiny model (``changes`` merged in, nested dicts merged) and its path."""

    def make(train: Path, val: Path | None = None, *, name: str = "config.yaml", **changes: Any) -> Path:
        cfg = {"run_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 4, "model": dict(TINY_MODEL),
               "data": {"train": str(train), "val": str(val) if val else None, "num_workers": 0},
               "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0}, "log_every": 1}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(deep_merge(cfg, changes)))
        return path

    return make


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the toy method and the dist-info that announces its entry point."""
    root = tmp_path_factory.mktemp("plugins")
    shutil.copy(PLUGIN, root / PLUGIN.name)
    info = root / "effvid_toy_skip-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: effvid-toy-skip\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[effvid.methods]\ntoy_skip = effvid_toy_skip\n")
    return root


@pytest.fixture
def discoverable(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_dir))
    return plugin_dir
