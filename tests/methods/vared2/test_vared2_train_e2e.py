"""A tiny VA-RED2 run end to end: a base run, ``effvid train`` of the dynamic model from its
checkpoint with the efficiency loss as a second stage, ``effvid eval --json`` and ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from effvid.cli import main
from effvid.cost.static import count_cost
from effvid.engine.train_config import load_train_config

CONFIGS = Path(__file__).resolve().parents[3] / "effvid" / "configs" / "vared2"
MODEL = {"name": "r2plus1d_18", "num_frames": 4, "frame_stride": 2, "crop_size": 32, "width_mult": 0.25,
         "depth_mult": 0.5, "train_resize": [32, 32], "test_resize": 32}


def _config(tmp_path: Path, synth, name: str, **changes) -> Path:
    cfg = {"run_dir": str(tmp_path / name), "epochs": 1, "batch_size": 4, "model": dict(MODEL),
           "data": {"train": str(synth.annotations["train"]), "val": str(synth.annotations["val"]), "num_workers": 0},
           "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0}, "log_every": 1, "max_steps_per_epoch": 2,
           **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_eval_predict_a_dynamic_model_from_a_base_checkpoint(synth_micro, tmp_path, capsys):
    assert main(["train", str(_config(tmp_path, synth_micro, "base"))]) == 0
    model = {**MODEL, "method": {"name": "vared2", "settings": {"temporal_choices": 2, "channel_choices": 3}}}
    dynamic = _config(tmp_path, synth_micro, "dynamic", epochs=2, model=model, init_from=str(tmp_path / "base"),
                      losses=[{"name": "ce"}, {"name": "efficiency", "weight": 0.8}],
                      stages=[{"name": "dynamic", "epochs": 1, "losses": ["ce"]},
                              {"name": "efficiency", "epochs": 1, "losses": ["ce", "efficiency"]}])
    capsys.readouterr()
    assert main(["train", str(dynamic)]) == 0
    records = [json.loads(line) for line in (tmp_path / "dynamic" / "metrics.jsonl").read_text().splitlines()]
    assert "efficiency" in records[-1]["train"] and "efficiency" not in records[0]["train"]
    log = (tmp_path / "dynamic" / "train.log").read_text()
    assert "init_from" in log

    assert main(["eval", str(tmp_path / "dynamic"), "--json", "--workers", "0"]) == 0
    result = _json(capsys)
    assert result["dynamic"] is True
    assert 0 < result["gmacs_per_view_min"] <= result["gmacs_per_view"] <= result["gmacs_per_view_max"]
    assert result["gmacs_per_view_max"] <= result["dense_gmacs_per_view"]

    video = synth_micro.root / synth_micro.annotations["val"].read_text().split()[0]
    assert main(["predict", str(tmp_path / "dynamic"), str(video), "--json"]) == 0
    prediction = _json(capsys)
    assert prediction["dynamic"] is True and prediction["gmacs"] > 0


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    spec = load_train_config(path).model.to_spec(10)
    assert spec.method is None or (spec.method.name == "vared2" and count_cost(spec).dynamic)
