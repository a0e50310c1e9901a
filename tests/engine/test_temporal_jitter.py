"""``data.clips_per_video``: every training video gives that many random clips per epoch (PAS 4.2)."""

from __future__ import annotations

import json

import pytest

from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import ConfigError


def steps_per_epoch(run_dir) -> list[int]:
    steps = [json.loads(line)["global_step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [b - a for a, b in zip([0, *steps], steps)]


def test_an_epoch_has_clips_per_video_times_the_steps(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(4)
    config = write_config(subset, None, epochs=2, batch_size=4, data={"clips_per_video": 3})
    train(load_train_config(config), progress=False)
    assert steps_per_epoch(tmp_path / "run") == [3, 3]  # 4 videos x 3 clips, 4 per batch
    capped = write_config(subset, None, name="capped.yaml", epochs=1, batch_size=4, run_dir=str(tmp_path / "capped"),
                          data={"clips_per_video": 3}, max_steps_per_epoch=2)
    train(load_train_config(capped), progress=False)
    assert steps_per_epoch(tmp_path / "capped") == [2]


@pytest.mark.parametrize("value", [0, -2])
def test_clips_per_video_below_one_names_the_key_and_value(subset_annotation, write_config, value):
    config = write_config(subset_annotation(4), None, data={"clips_per_video": value})
    with pytest.raises(ConfigError, match=rf"data.clips_per_video must be an integer >= 1, got {value}"):
        load_train_config(config)
