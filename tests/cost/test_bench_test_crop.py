"""``effvid bench --size S`` sets both crops to ``S``, as ``effvid flops --size`` does; without it a
model is timed and priced at its spec's test crop (SlowFast: 256)."""

from __future__ import annotations

import argparse
from pathlib import Path

from effvid.commands import bench
from effvid.engine.checkpoint import save_checkpoint
from effvid.models import create_from_spec, default_spec

NARROW = ["--width", "0.25", "--depth", "0.34", "--frames", "8"]


def resolved_spec(*argv: str):
    """The spec ``effvid bench ARGV`` times: what :func:`bench._resolve_model` resolves."""
    parser = argparse.ArgumentParser(prog="effvid")
    bench.register(parser.add_subparsers())
    return bench._resolve_model(parser.parse_args(["bench", *argv]))[1]


def test_size_sets_the_train_and_test_crop_of_a_model_name():
    spec = resolved_spec("slowfast_4x16_r50", "--size", "64", *NARROW)
    assert (spec.crop_size, spec.test_crop_size, spec.test_crop) == (64, None, 64)
    default = resolved_spec("slowfast_4x16_r50", *NARROW)
    assert (default.crop_size, default.test_crop) == (224, 256)


def test_size_rebuilds_a_checkpoint_with_a_test_crop_at_one_crop(tmp_path: Path):
    spec = default_spec("r2plus1d_18", num_classes=3, num_frames=4, crop_size=32, test_crop_size=48, test_resize=56,
                        width_mult=0.25, depth_mult=0.5)
    save_checkpoint(tmp_path / "tiny", model=create_from_spec(spec), class_names=["a", "b", "c"])
    rebuilt = resolved_spec(str(tmp_path / "tiny"), "--size", "40")
    assert (rebuilt.crop_size, rebuilt.test_crop_size, rebuilt.test_crop) == (40, None, 40)
    assert resolved_spec(str(tmp_path / "tiny")).test_crop == 48
