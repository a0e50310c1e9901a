"""Adaptive fine-tuning: input operators start from the previous network's weights, architecture operators do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from effvid.config import from_dict
from effvid.engine.checkpoint import load_checkpoint, save_checkpoint
from effvid.methods.pas.config import ShrinkConfig
from effvid.methods.pas.ledger import Ledger
from effvid.methods.pas.search import run_search
from effvid.models import create_from_spec, default_spec

LR = 0.05


def _base_checkpoint(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    spec = default_spec("r2plus1d_18", num_classes=16, num_frames=4, frame_stride=4, crop_size=32,
                        train_resize=(32, 36), test_resize=32, width_mult=0.25)
    torch.manual_seed(1)
    model = create_from_spec(spec)
    stem = folder / "base" / "best"
    stem.parent.mkdir(parents=True)
    save_checkpoint(stem, model=model, spec=spec, class_names=[str(i) for i in range(16)])
    return stem, {k: v.clone() for k, v in model.state_dict().items()}


def test_input_operators_copy_the_previous_weights_architecture_operators_do_not(tiny_data, tmp_path):
    stem, base_weights = _base_checkpoint(tmp_path)
    cfg = from_dict(ShrinkConfig, {
        "run_dir": str(tmp_path / "run"), "base": {"checkpoint": str(stem)}, "iterations": 1,
        "operators": ["s", "c", "l"],
        "data": {"train": str(tiny_data / "train.txt"), "val": str(tiny_data / "val.txt"), "num_workers": 0},
        # only the classifier trains: whatever the backbone holds afterwards is what it was initialised with
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1, "device": "cpu",
                  "optim": {"lr": LR}, "schedule": {"decay": "constant"},
                  "stages": [{"name": "head", "epochs": 1, "train": ["fc.*"]}]},
        "ray": {"num_cpus": 2}, "latency_repeats": 0})
    run_search(cfg, log=lambda _: None, write_report=False)
    ledger = Ledger.in_run_dir(cfg.run_dir)

    def trained(op: str) -> tuple[dict, dict[str, torch.Tensor], list[dict]]:
        entry = ledger.get(f"it1-{op}")
        assert entry["status"] == "done"
        weights, _ = load_checkpoint(entry["checkpoint"])
        lines = (Path(entry["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        return entry, weights, [json.loads(line) for line in lines]

    backbone = [k for k, v in base_weights.items() if not k.startswith("fc.") and v.is_floating_point()
                and "running" not in k]
    for op in "s":
        entry, weights, metrics = trained(op)
        assert entry["init"] == "from-previous" and entry["init_from"] == str(stem)
        for key in backbone:
            assert torch.equal(weights[key], base_weights[key]), (op, key)
        assert metrics[-1]["lr"] == pytest.approx(LR * 0.1)  # fine-tuning divides the learning rate by 10
    entry, weights, metrics = trained("c")
    assert entry["init"] == "random" and entry["init_from"] is None
    assert weights["stem.0.weight"].shape[0] < base_weights["stem.0.weight"].shape[0]
    assert metrics[-1]["lr"] == pytest.approx(LR)
    entry, weights, metrics = trained("l")
    assert entry["init"] == "random" and metrics[-1]["lr"] == pytest.approx(LR)
    # the stem and the first block of each stage keep their shapes after epsilon_l, yet their weights are fresh
    assert weights["stem.0.weight"].shape == base_weights["stem.0.weight"].shape
    assert not torch.equal(weights["stem.0.weight"], base_weights["stem.0.weight"])
    assert not torch.equal(weights["layer1.0.conv1.0.0.weight"], base_weights["layer1.0.conv1.0.0.weight"])
    assert "layer1.1.conv1.0.0.weight" in base_weights and "layer1.1.conv1.0.0.weight" not in weights
