"""Table 4 on top of a finished search: one iteration's input-operator hypotheses trained again without KD (from
R_{k-1}'s weights) and with KD from random weights, as ledger entries of their own that never take part in selection;
resumable, and on a run continued with more iterations. Then a replaced base is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from effvid.config import from_dict
from effvid.engine.checkpoint import read_sidecar, save_checkpoint
from effvid.errors import ConfigError
from effvid.methods.pas.config import ShrinkConfig, load_shrink_config
from effvid.methods.pas.ledger import Ledger, ablation_rows
from effvid.methods.pas.report import write_report
from effvid.methods.pas.search import run_search
from effvid.models import create_from_spec, default_spec

LR = 0.05


def _save_base(stem: Path, seed: int) -> None:
    spec = default_spec("r2plus1d_18", num_classes=16, num_frames=4, frame_stride=4, crop_size=32,
                        train_resize=(32, 36), test_resize=32, width_mult=0.25, depth_mult=0.5)
    torch.manual_seed(seed)
    save_checkpoint(stem, model=create_from_spec(spec), spec=spec, class_names=[str(i) for i in range(16)])


def _config(folder: Path, data: Path) -> Path:
    _save_base(folder / "base" / "best", seed=0)
    cfg = {"run_dir": str(folder / "run"), "base": {"checkpoint": str(folder / "base" / "best")}, "iterations": 1,
           "operators": ["s"], "latency_repeats": 0,
           "data": {"train": str(data / "train.txt"), "val": str(data / "val.txt"), "num_workers": 0},
           "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1, "device": "cpu",
                     "optim": {"lr": LR}, "schedule": {"decay": "constant"}},
           "ray": {"num_cpus": 2}}
    path = folder / "pas.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _last_lr(entry: dict) -> float:
    return json.loads((Path(entry["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1])["lr"]


def test_single_iteration_ablation_on_top_of_a_finished_search(tiny_data, tmp_path):
    config = _config(tmp_path, tiny_data)
    quiet = {"log": lambda _: None, "write_report": False}
    run_search(load_shrink_config(config), **quiet)

    # the same run continued: one more iteration, and Table 4 on it, for epsilon_s only
    more = load_shrink_config(config, ["iterations=2", "ablation.iteration=2", "ablation.operators=[s]"])
    summary = run_search(more, **quiet)
    ledger = Ledger.in_run_dir(more.run_dir)
    base, r1 = ledger.get("base"), ledger.selected()[0]
    assert len(ledger.selections) == 2 and summary["sequence"] == [s["operator"] for s in ledger.selected()]
    assert [e["id"] for e in ledger.iteration(2)] == ["it2-s"]  # selection sees hypotheses only
    assert ledger.selections[1]["id"] in ledger.selections[1]["scores"]["tied"]
    full = ledger.get("it2-s")
    nokd, scratch = ledger.get("it2-s-nokd"), ledger.get("it2-s-scratch")
    assert [e["id"] for e in ledger.of_kind("ablation")] == ["it2-s-nokd", "it2-s-scratch"]
    for entry in (nokd, scratch):
        assert entry["kind"] == "ablation" and entry["of"] == "it2-s" and entry["parent"] == r1["id"]
        assert entry["status"] == "done" and entry["attempts"] == 1 and entry["spec"] == full["spec"]
        assert entry["gmacs"] == full["gmacs"] and Path(entry["run_dir"]).parent.name == "ablations"
    # no KD, fine-tuned from R_1 at the fine-tuning learning rate
    assert nokd["teacher"] is None and nokd["init"] == "from-previous" and nokd["init_from"] == r1["checkpoint"]
    assert yaml.safe_load((Path(nokd["run_dir"]) / "config.yaml").read_text())["distill"] is None
    assert _last_lr(nokd) == pytest.approx(LR * 0.1)
    # KD from B, from random weights at the full learning rate
    assert scratch["teacher"] == base["checkpoint"] and scratch["init"] == "random" and scratch["init_from"] is None
    assert yaml.safe_load((Path(scratch["run_dir"]) / "config.yaml").read_text())["distill"]["teacher"] == base["checkpoint"]
    assert _last_lr(scratch) == pytest.approx(LR)

    rows = ablation_rows(ledger)
    assert [(r["variant"], r["kd"], r["finetune"]) for r in rows] == [
        ("full", True, True), ("nokd", False, True), ("scratch", True, False)]
    assert [r["operators"]["s"]["id"] for r in rows] == ["it2-s", "it2-s-nokd", "it2-s-scratch"]
    assert all(r["iteration"] == 2 and r["operators"]["s"]["top1"] is not None for r in rows)
    report = write_report(more.run_dir, log=lambda _: None, measure=False)
    assert report["ablation"] == rows
    table4 = Path(report["report"]).read_text().split("## Ablation at iteration 2 (Table 4): top-1 %")[1]
    assert "epsilon_s" in table4 and table4.count("| yes ") + table4.count("| no ") >= 3

    # resumable: the same command again trains nothing
    run_search(more, **quiet)
    assert all(e["attempts"] <= 1 for e in Ledger.in_run_dir(more.run_dir).entries.values())

    # the base's weights are recorded; retrained in place, the run refuses to continue on them
    assert base["weights_sha256"] == read_sidecar(base["checkpoint"])["weights_sha256"]
    _save_base(tmp_path / "base" / "best", seed=1)
    with pytest.raises(ConfigError, match="has other weights"):
        run_search(more, **quiet)


def _checked(**changes) -> ShrinkConfig:
    data = {"run_dir": "r", "data": {"train": "a.txt", "val": "b.txt"}, "base": {"checkpoint": "b"},
            "train": {"epochs": 1, "batch_size": 2}, "iterations": 3, **changes}
    return from_dict(ShrinkConfig, data)


def test_the_ablation_defaults_to_the_input_operators_searched_and_needs_a_full_pas_search():
    assert _checked(ablation={"iteration": 3}).ablation.operators == ["s", "t", "f"]
    assert _checked(operators=["t", "c", "l"], ablation={"iteration": 2}).ablation.operators == ["t"]
    with pytest.raises(ConfigError, match="ablation.operators: c change weight shapes"):
        _checked(ablation={"iteration": 3, "operators": ["s", "c"]})
    with pytest.raises(ConfigError, match="ablation.operators: the search explores s,t"):
        _checked(operators=["s", "t"], ablation={"iteration": 3, "operators": ["f"]})
    with pytest.raises(ConfigError, match="ablation.iteration=4: the search runs only 3"):
        _checked(ablation={"iteration": 4})
    for switch in ("distill", "finetune"):
        with pytest.raises(ConfigError, match="needs distill: true and finetune: true"):
            _checked(ablation={"iteration": 1}, **{switch: False})
