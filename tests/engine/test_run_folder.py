"""The run folder: refused in one line when unusable, held by one run, kept clean, resumed only
with the config it was trained with; mistakes found before the first step, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from effvid.config import from_dict, to_dict
from effvid.engine import checkpoint as ckpt
from effvid.engine.rundir import config_changes, field_defaults, run_lock
from effvid.engine.train_config import TrainConfig, load_train_config
from effvid.engine.trainer import train
from effvid.errors import ConfigError, EffvidError


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effvid", *args], capture_output=True, text=True, timeout=300)


def _one_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


@pytest.mark.parametrize("where", ["file", "below_file", "unwritable"])
def test_an_unusable_run_dir_is_one_line_before_anything_runs(where, subset_annotation, write_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run_dir = {"file": blocker, "below_file": blocker / "run", "unwritable": Path("/proc/effvid-run")}[where]
    config = write_config(subset_annotation(4), epochs=1, run_dir=str(run_dir))
    line = _one_line(_cli("train", str(config)))
    assert f"run_dir {run_dir}" in line
    assert blocker.read_text() == "not a folder"


def test_a_second_run_on_a_held_folder_stops_naming_the_holder(subset_annotation, write_config, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = write_config(subset_annotation(4), epochs=1)
    with run_lock(run_dir):
        line = _one_line(_cli("train", str(config)))
    assert f"in use by process {os.getpid()}" in line
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_and_temp_files_are_cleaned(subset_annotation, write_config,
                                                                               tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))
    stale = run_dir / "checkpoints" / ".epoch_0001.safetensors.tmp999999.safetensors"
    stale.write_bytes(b"x" * 1000)
    result = train(load_train_config(write_config(subset_annotation(4), epochs=1)), progress=False)
    assert result.last_checkpoint is not None and not stale.exists()
    log = (run_dir / "train.log").read_text()
    assert "taking over the lock of process 999999" in log and "removed 1 temporary file" in log


def test_resume_refuses_a_changed_config_unless_forced(subset_annotation, write_config, tmp_path):
    config = write_config(subset_annotation(4), epochs=2, max_steps_per_epoch=1)
    train(load_train_config(config, ["epochs=1"]), progress=False)
    with pytest.raises(ConfigError, match=r"optim\.lr \(0\.003 -> 0\.01\)") as err:
        train(load_train_config(config, ["epochs=1", "optim.lr=0.01"]), progress=False)
    assert "resume=force" in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(ConfigError, match=r"epochs \(1 -> 2\)"):
        train(load_train_config(config), progress=False)
    forced = train(load_train_config(config, ["resume=force", "data.num_workers=1"]), progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and forced.epochs_completed == 2


def test_a_validation_error_keeps_the_epoch_that_trained(synth_micro, subset_annotation, write_config, tmp_path):
    bad = tmp_path / "truncated.mp4"
    first_val = synth_micro.root / synth_micro.annotations["val"].read_text().split()[0]
    bad.write_bytes(first_val.read_bytes()[:300])
    val = tmp_path / "val.txt"
    val.write_text(f"{first_val} 0\n{bad} 1\n")
    config = write_config(subset_annotation(4), val, epochs=2, max_steps_per_epoch=1)
    with pytest.raises(EffvidError, match="truncated.mp4"):
        train(load_train_config(config), progress=False)
    stem = ckpt.find_last_complete(tmp_path / "run")
    assert stem is not None and stem.name == "epoch_0001"


@pytest.mark.parametrize("mistake", ["test_resize", "label", "best_metric"])
def test_mistakes_validation_would_find_stop_before_the_first_step(mistake, synth_micro, subset_annotation,
                                                                   write_config, tmp_path):
    val = tmp_path / "val" / "val.txt"  # no classes.txt beside it: its labels are checked against training's
    val.parent.mkdir()
    first, second = (synth_micro.root / line.split()[0]
                     for line in synth_micro.annotations["val"].read_text().splitlines()[:2])
    val.write_text(f"{first} 0\n{second} {99 if mistake == 'label' else 1}\n")
    changes = {"test_resize": {"model": {"test_resize": 16}}, "label": {}, "best_metric": {"best_metric": "top1"}}
    config = write_config(subset_annotation(4), val, epochs=1, **changes[mistake])
    line = _one_line(_cli("train", str(config)))
    expected = {"test_resize": "test_resize 16 is smaller than crop_size 32", "label": f"{val}:2: video",
                "best_metric": "best_metric 'top1'"}
    assert expected[mistake] in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_skip_counts_distinct_files_and_covers_validation(synth_micro, subset_annotation, write_config, tmp_path):
    train_list = subset_annotation(8)
    good = train_list.read_text().splitlines()
    broken = []
    for name in ("empty.mp4", "cut.mp4"):
        path = tmp_path / name
        path.write_bytes(b"" if name == "empty.mp4" else (synth_micro.root / good[0].split()[0]).read_bytes()[:300])
        broken.append(f"{path} 0")
    train_list.write_text("\n".join(good + broken) + "\n")
    val = tmp_path / "val.txt"
    first, second = (synth_micro.root / line.split()[0]
                     for line in synth_micro.annotations["val"].read_text().splitlines()[:2])
    val.write_text(f"{first} 0\n{second} 1\n{tmp_path / 'cut.mp4'} 1\n")
    config = write_config(train_list, val, epochs=1, batch_size=2, data={"on_error": "skip"})
    result = train(load_train_config(config), progress=False)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.skipped_files == 2 and record["skipped"]["files"] == 2
    assert record["skipped"]["attempts"] >= 2 and result.skipped_attempts == record["skipped"]["attempts"]
    assert record["val"]["skipped_videos"] == 1 and record["val"]["num_videos"] == 2


def test_a_key_added_after_the_run_counts_as_its_default_on_resume():
    base = {"run_dir": "r", "epochs": 1, "batch_size": 2, "model": {"name": "r2plus1d_18"}}
    cfg = from_dict(TrainConfig, {**base, "data": {"train": "t.txt"}}, source="test")
    recorded = to_dict(cfg)
    del recorded["data"]["clips_per_video"]  # a run recorded before the option existed
    assert config_changes(recorded, to_dict(cfg), defaults=field_defaults(cfg)) == []
    changed = to_dict(from_dict(TrainConfig, {**base, "data": {"train": "t.txt", "clips_per_video": 3}}, source="test"))
    assert config_changes(recorded, changed, defaults=field_defaults(cfg)) == ["data.clips_per_video (1 -> 3)"]
