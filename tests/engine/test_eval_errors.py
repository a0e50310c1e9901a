"""Unreadable videos in evaluation: ``on_error="skip"`` leaves them out of every metric (nothing
substituted) and says how many; ``"raise"`` stops with one line naming the file, from DataLoader
workers as well; the CLI prints that line alone and exits 2."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from effvid.data.video_writer import write_video
from effvid.engine.checkpoint import save_checkpoint
from effvid.engine.evaluate import evaluate
from effvid.errors import EffvidError, VideoError
from effvid.models import create_from_spec

LABELS = [0, 1, 2, 3]


@pytest.fixture
def videos(tmp_path: Path) -> list[Path]:
    """Four 32x32 MP4s of different noise; the second is cut to its first 200 bytes."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = tmp_path / f"v{i}.mp4"
        write_video(path, (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)))
        paths.append(path)
    paths[1].write_bytes(paths[1].read_bytes()[:200])
    return paths


def listing(path: Path, videos: list[Path], labels: list[int]) -> Path:
    path.write_text("".join(f"{video} {label}\n" for video, label in zip(videos, labels)))
    return path


@pytest.fixture
def model(tiny_spec):
    torch.manual_seed(3)
    return create_from_spec(tiny_spec(4)).eval()


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_leaves_the_unreadable_video_out_of_every_metric(model, videos, tmp_path, caplog, workers):
    mixed = listing(tmp_path / "mixed.txt", videos, LABELS)
    good = listing(tmp_path / "good.txt", [videos[i] for i in (0, 2, 3)], [LABELS[i] for i in (0, 2, 3)])
    with caplog.at_level(logging.WARNING, logger="effvid"):
        result = evaluate(model, mixed, views=(2, 1), num_workers=workers, batch_size=3, on_error="skip",
                          count_cost=False)
    reference = evaluate(model, good, views=(2, 1), num_workers=0, batch_size=3, count_cost=False)
    assert result.skipped_videos == 1 and result.num_videos == reference.num_videos == 3
    assert result.to_dict()["skipped_videos"] == 1 and reference.to_dict()["skipped_videos"] == 0
    for key in ("clip_top1", "video_top1", "video_top5", "mean_class_acc", "mAP"):
        assert getattr(result, key) == pytest.approx(getattr(reference, key)), key
    assert torch.allclose(result.video_probs, reference.video_probs, atol=1e-6)
    assert torch.equal(result.video_targets, reference.video_targets)
    assert result.video_indices.tolist() == [0, 2, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([m for m in warnings if str(videos[1]) in m]) == 1  # two views, one line
    assert len(warnings) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_raise_stops_with_one_line_naming_the_file(model, videos, tmp_path, workers):
    mixed = listing(tmp_path / "mixed.txt", videos, LABELS)
    with pytest.raises(VideoError) as info:
        evaluate(model, mixed, num_workers=workers, count_cost=False)
    message = str(info.value)
    assert type(info.value) is VideoError and len(message.splitlines()) == 1
    assert message.startswith(f"{videos[1]}: ") and info.value.path == str(videos[1])


def test_skip_with_no_readable_video_names_the_annotation(model, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    bad = listing(tmp_path / "bad.txt", [empty, tmp_path / "missing.mp4"], [0, 1])
    with pytest.raises(EffvidError) as info:
        evaluate(model, bad, num_workers=0, on_error="skip", count_cost=False)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{bad}: ")
    assert "none of its 2 videos" in message and str(empty) in message


def test_eval_cli_with_workers_prints_one_line_and_exits_2(tiny_spec, videos, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    data = listing(tmp_path / "val.txt", [videos[0], empty, videos[2]], [0, 1, 2])
    stem = tmp_path / "tiny"
    save_checkpoint(stem, model=create_from_spec(tiny_spec(4)), class_names=["a", "b", "c", "d"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "effvid", "eval", str(stem), "--data", str(data), "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert str(empty) in lines[0] and "empty file (0 bytes)" in lines[0] and "Traceback" not in lines[0]
