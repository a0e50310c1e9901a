"""PAS hypotheses trained data-parallel through Ray Train, and the absolute paths every task is given."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from effvid.config import from_dict
from effvid.engine.train_config import TrainConfig
from effvid.errors import ConfigError
from effvid.methods.pas.config import RayConfig, ResourcesConfig, load_shrink_config
from effvid.methods.pas.ledger import Ledger
from effvid.methods.pas.runner import RayRunner, absolute_paths, scaling_config, task_options
from effvid.methods.pas.search import run_search

CONFIG = Path(__file__).resolve().parents[3] / "effvid" / "configs" / "pas" / "synth_tiny.yaml"


def _relative_config() -> TrainConfig:
    return from_dict(TrainConfig, {
        "run_dir": "runs/h", "epochs": 1, "batch_size": 2, "init_from": "prev/best",
        "model": {"name": "r2plus1d_18", "pretrained": [{"path": "w/a.pt", "into": "a"}, {"path": "/abs/b.pt"}]},
        "data": {"train": "data/train.txt", "val": "data/val.txt", "root": "videos", "classes": "data/classes.txt"},
        "distill": {"teacher": "base/best"}}, source="test")


def test_every_path_of_a_train_config_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = absolute_paths(_relative_config())
    assert cfg.run_dir == str(tmp_path / "runs" / "h") and cfg.init_from == str(tmp_path / "prev" / "best")
    assert cfg.distill.teacher == str(tmp_path / "base" / "best") and cfg.distill.temperature == 5.0
    data = cfg.data
    assert (data.train, data.val, data.root, data.classes) == tuple(
        str(tmp_path / p) for p in ("data/train.txt", "data/val.txt", "videos", "data/classes.txt"))
    assert [p.path for p in cfg.model.pretrained] == [str(tmp_path / "w" / "a.pt"), "/abs/b.pt"]
    assert cfg.model.pretrained[0].into == "a" and cfg.epochs == 1 and cfg.batch_size == 2


def test_unset_paths_stay_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = absolute_paths(from_dict(TrainConfig, {"run_dir": "r", "epochs": 1, "batch_size": 1,
                                                 "model": {"name": "r2plus1d_18"}, "data": {"train": "t.txt"}},
                                   source="test"))
    assert cfg.data.val is None and cfg.data.root is None and cfg.distill is None and cfg.init_from is None
    assert cfg.model.pretrained is None and cfg.run_dir == str(tmp_path / "r")


@pytest.mark.parametrize("resources", [ResourcesConfig(), ResourcesConfig(workers=2)])
def test_the_runner_submits_absolute_paths(resources, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    submitted: list[Any] = []

    class Remote:
        def remote(self, cfg: TrainConfig, *args: Any) -> object:
            submitted.append(cfg)
            return object()

    runner = RayRunner(resources, RayConfig())
    runner._remote = Remote()
    runner.submit("it1-s", _relative_config())
    (cfg,) = submitted
    assert os.path.isabs(cfg.run_dir) and os.path.isabs(cfg.data.train) and os.path.isabs(cfg.distill.teacher)
    assert cfg.data.val == str(tmp_path / "data" / "val.txt") and runner.pending == 1


def test_cpu_workers_train_one_hypothesis_over_gloo():
    cpu = ResourcesConfig(num_cpus=1, workers=2)
    assert cpu.distributed and cpu.num_workers == 2
    scaling = scaling_config(cpu)
    assert scaling.num_workers == 2 and not scaling.use_gpu and scaling.resources_per_worker == {"CPU": 0.5}
    assert task_options(cpu)["num_cpus"] == 0  # the driving task holds no CPU its workers may need
    assert ResourcesConfig(num_gpus=4, workers=4).num_workers == 4 == ResourcesConfig(num_gpus=4).num_workers
    assert not ResourcesConfig(num_gpus=1).distributed and not ResourcesConfig().distributed


@pytest.mark.parametrize(("fields", "message"), [
    ({"workers": 0}, "resources.workers: need at least 1 worker, got 0"),
    ({"workers": 2, "num_gpus": 1}, "resources.workers: 2 GPU workers take one GPU each, so num_gpus must be 2"),
    ({"workers": 2, "num_gpus": 4}, "num_gpus must be 2 (or 0 for CPU workers), got 4"),
])
def test_bad_worker_counts_are_one_line_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        ResourcesConfig(**fields)
    assert "\n" not in str(err.value)


def test_a_search_with_two_cpu_workers_per_hypothesis_records_rank0_results(tiny_data, tmp_path, monkeypatch):
    # relative paths on purpose: Ray Train runs its workers in a working directory of its own
    monkeypatch.chdir(tmp_path)
    data = os.path.relpath(tiny_data, tmp_path)
    cfg = load_shrink_config(CONFIG, ["run_dir=run", f"data.train={data}/train.txt", f"data.val={data}/val.txt",
                                      "operators=[s]", "iterations=1", "resources.workers=2", "latency_repeats=1",
                                      "train.max_steps_per_epoch=null", "train.batch_size=8"])
    summary = run_search(cfg, log=lambda line: None)
    # each of the 2 ranks reads half the training videos: an epoch is half the single-process steps
    steps_per_epoch = len((tiny_data / "train.txt").read_text().splitlines()) // 2 // 8

    ledger = Ledger.in_run_dir(tmp_path / "run")
    base, hypothesis = ledger.get("base"), ledger.get("it1-s")
    for entry in (base, hypothesis):
        assert entry["status"] == "done" and entry["attempts"] == 1
        assert 0.0 <= entry["top1"] <= entry["top5"] <= 1.0
        assert Path(entry["checkpoint"]).is_absolute() and Path(entry["checkpoint"] + ".safetensors").exists()
        run_dir = Path(entry["run_dir"]).resolve()
        assert (run_dir / "ray_train" / "effvid-pas").is_dir()
        epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [e["global_step"] for e in epochs] == [steps_per_epoch]
    assert hypothesis["teacher"] == base["checkpoint"] and hypothesis["init_from"] == base["checkpoint"]
    assert summary["sequence"] == ["s"]
