"""Experiment trackers, offline: MLflow's file store and W&B's offline mode get the config and
every epoch's metrics, and a resumed run continues the same tracker run."""

from __future__ import annotations

from pathlib import Path

import pytest

from effvid.engine import checkpoint as ckpt
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train


def test_mlflow_gets_params_and_every_epoch_and_a_resume_continues_its_run(subset_annotation, write_config,
                                                                          tmp_path: Path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    config = write_config(subset_annotation(4), epochs=2, max_steps_per_epoch=1,
                          log={"tracker": "mlflow", "uri": store.as_uri(), "project": "tests"})
    train(load_train_config(config, ["epochs=1", "resume=force"]), progress=False)
    first = ckpt.load_training_state(ckpt.find_last_complete(tmp_path / "run"))["extra"]["tracker_run_id"]
    train(load_train_config(config, ["resume=force"]), progress=False)
    second = ckpt.load_training_state(ckpt.find_last_complete(tmp_path / "run"))["extra"]["tracker_run_id"]
    assert first == second
    runs = [p for p in store.glob("*/*") if (p / "metrics").is_dir()]
    assert [p.name for p in runs] == [first]
    steps = [line.split()[2] for line in (runs[0] / "metrics" / "train" / "loss").read_text().splitlines()]
    assert steps == ["1", "2"]
    assert (runs[0] / "params" / "optim.lr").read_text() == "0.003"


def test_wandb_offline_writes_a_local_run(subset_annotation, write_config, tmp_path: Path):
    pytest.importorskip("wandb")
    config = write_config(subset_annotation(4), epochs=1, max_steps_per_epoch=1,
                          log={"tracker": "wandb", "mode": "offline", "project": "tests"})
    train(load_train_config(config), progress=False)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
