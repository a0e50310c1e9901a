"""A tiny D-STEP run: initialised from a TSM-R18 checkpoint, trained through ``effvid train``
(warm-up without the sparsity term, then with it), evaluated with ``eval --json``, and ``predict``."""

from __future__ import annotations

import json

import yaml
from dstep_helpers import dstep_spec

from effvid.cli import main
from effvid.engine.checkpoint import save_checkpoint
from effvid.models import create_from_spec


def test_a_tiny_dstep_trains_from_a_tsm_checkpoint_evaluates_and_predicts(synth_micro, tmp_path, capsys):
    spec = dstep_spec("tsm_r18", frames=4, hidden=16, compute_bias=2.0,
                      loss={"target": 0.6, "alpha": 1.0, "beta": 0.1, "warmup_epochs": 1})
    base = create_from_spec(spec.replace(method=None))
    save_checkpoint(tmp_path / "tsm", model=base, spec=base.spec)
    train, val = synth_micro.annotations["train"], synth_micro.annotations["val"]
    cfg = {"run_dir": str(tmp_path / "run"), "epochs": 2, "batch_size": 4, "seed": 0, "log_every": 1,
           "max_steps_per_epoch": 3, "init_from": str(tmp_path / "tsm"),
           "model": {"spec": spec.to_dict()},
           "data": {"train": str(train), "val": str(val), "num_workers": 0, "val_views": [1, 1]},
           "optim": {"name": "sgd", "lr": 0.001, "weight_decay": 0.0005},
           "losses": [{"name": "ce"}, {"name": "sparsity"}, {"name": "bound", "weight": 1.0}]}
    config = tmp_path / "dstep.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "train" in r]
    assert epochs[0]["train"]["sparsity"] == 0.0 and epochs[1]["train"]["sparsity"] > 0.0
    assert "bound" in epochs[0]["train"]

    capsys.readouterr()
    assert main(["eval", str(run / "checkpoints" / "best"), "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dynamic"] is True
    assert result["gmacs_per_view_min"] <= result["gmacs_per_view"] <= result["gmacs_per_view_max"]
    assert result["gmacs_per_view_max"] <= result["dense_gmacs_per_view"]
    video = synth_micro.root / val.read_text().split()[0]
    assert main(["predict", str(run / "checkpoints" / "best"), str(video), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)
    assert prediction["dynamic"] is True and 0 < prediction["gmacs"] <= result["dense_gmacs_per_view"]


def test_the_shipped_configs_validate_and_build():
    from importlib.resources import files

    from effvid.engine.train_config import load_train_config

    folder = files("effvid") / "configs" / "dstep"
    targets = {}
    complete = (p for p in folder.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("paper_"))  # paper_*: bases
    for path in sorted(complete, key=lambda p: p.name):
        cfg = load_train_config(str(path))
        if cfg.model.spec is not None and cfg.model.spec.get("method"):
            model = create_from_spec(cfg.model.to_spec(27))
            targets[path.name] = model.settings.loss.target
    assert targets["synth_dstep_d080.yaml"] == 0.8 and targets["synth_dstep_d040.yaml"] == 0.4
    assert targets["ssv2_tsm_r18.yaml"] == 0.6 and not create_from_spec(
        load_train_config(str(folder / "synth_adafuse.yaml")).model.to_spec(8)).settings.spatial
