"""Resume checks: a run continued with a config or a base that would change its results is refused, with one line
naming the ledger and the first differing key (exit 2 from the CLI); what only moves where it stops or how it runs
is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from effvid.cli import main
from effvid.config import deep_merge, from_dict, to_dict
from effvid.engine.checkpoint import save_checkpoint, weights_sha256
from effvid.errors import ConfigError
from effvid.methods.pas.config import ShrinkConfig
from effvid.methods.pas.ledger import Ledger, control_id
from effvid.methods.pas.search import check_resume
from effvid.models import create_from_spec, default_spec


def _save_base(stem: Path, seed: int) -> Path:
    spec = default_spec("r2plus1d_18", num_classes=16, num_frames=4, frame_stride=4, crop_size=32,
                        train_resize=(32, 36), test_resize=32, width_mult=0.25, depth_mult=0.5)
    torch.manual_seed(seed)
    save_checkpoint(stem, model=create_from_spec(spec), spec=spec, class_names=[str(i) for i in range(16)])
    return stem


def _data(folder: Path) -> dict:
    return {"run_dir": str(folder / "run"), "base": {"checkpoint": str(folder / "base" / "best")},
            "data": {"train": "train.txt", "val": "val.txt"}, "operators": ["s", "t", "c"], "iterations": 2,
            "train": {"epochs": 2, "batch_size": 8, "optim": {"lr": 0.05}}}


def _cfg(folder: Path, **changes) -> ShrinkConfig:
    return from_dict(ShrinkConfig, deep_merge(_data(folder), changes))


@pytest.fixture
def started(tmp_path) -> tuple[Path, Ledger]:
    """A run as the search leaves it once the base is evaluated: its config and the base's weights recorded."""
    stem = _save_base(tmp_path / "base" / "best", seed=0)
    ledger = Ledger.in_run_dir(tmp_path / "run")
    ledger.meta["config"] = to_dict(_cfg(tmp_path))
    ledger.add({"id": "base", "kind": "base", "iteration": 0, "operator": None, "init": "checkpoint",
                "status": "done", "checkpoint": str(stem), "weights_sha256": weights_sha256(stem),
                "top1": 0.5, "top5": 0.9, "gmacs": 0.01})
    return tmp_path, ledger


@pytest.mark.parametrize("changes, key, before, now", [
    ({"train": {"epochs": 3}}, "train.epochs", "2", "3"),
    ({"train": {"optim": {"lr": 0.1}}}, "train.optim.lr", "0.05", "0.1"),
    ({"data": {"val": "other.txt"}}, "data.val", '"val.txt"', '"other.txt"'),
    ({"base": {"checkpoint": "elsewhere/best"}}, "base.checkpoint", None, '"elsewhere/best"'),
    ({"operators": ["s", "t"]}, "operators", '["s", "t", "c"]', '["s", "t"]'),
    ({"gammas": {"s": 2.0}}, "gammas.s", "1.4", "2.0"),
    ({"distill": False}, "distill", "true", "false"),
    ({"finetune_lr_scale": 0.5}, "finetune_lr_scale", "0.1", "0.5"),
    ({"distillation": {"temperature": 4.0}}, "distillation.temperature", "5.0", "4.0"),
    ({"cost_tolerance": 0.2}, "cost_tolerance", "0.1", "0.2"),
    ({"tie_tolerance": 0.0}, "tie_tolerance", "0.001", "0.0"),
])
def test_a_resumed_run_refuses_a_config_that_changes_its_results(started, changes, key, before, now):
    folder, ledger = started
    with pytest.raises(ConfigError) as err:
        check_resume(Ledger(ledger.path), _cfg(folder, **changes))
    message = str(err.value)
    assert message.startswith(f"{ledger.path}: this run was made with {key}=") and "\n" not in message
    assert message.endswith(f"the config now says {now}; use a new run_dir or restore the config")
    assert before is None or f"{key}={before}," in message


def test_a_resumed_run_accepts_what_only_moves_where_it_stops_or_how_it_runs(started):
    folder, ledger = started
    check_resume(ledger, _cfg(folder, iterations=5, target_gmacs=0.001, retries=3, latency_repeats=0,
                              latency_threads=2, resources={"num_cpus": 2}, ray={"num_cpus": 4}, control=True,
                              ablation={"iteration": 2}, name="renamed"))
    # the same settings spelled out (defaults, factors) are the same settings
    check_resume(ledger, _cfg(folder, train={"seed": 0, "schedule": {}}, gammas={"s": 1.4, "t": 2.0},
                              distillation={"temperature": 5.0}))


def test_control_train_counts_once_a_control_was_trained(started):
    folder, ledger = started
    longer = _cfg(folder, control=True, control_train={"epochs": 45, "batch_size": 8})
    check_resume(ledger, longer)  # no control yet: nothing it decides has been trained
    ledger.add({"id": control_id(1), "kind": "control", "iteration": 1, "status": "done"})
    with pytest.raises(ConfigError, match=r"made with control_train\.epochs=2, the config now says 45"):
        check_resume(ledger, longer)


def test_a_replaced_base_checkpoint_is_refused(started):
    folder, ledger = started
    stem = _save_base(folder / "base" / "best", seed=1)  # retrained in place: same path, other weights
    with pytest.raises(ConfigError, match=rf"^{ledger.path}: the base checkpoint {stem} has other weights .*SHA-256"):
        check_resume(ledger, _cfg(folder))


def test_a_ledger_without_the_base_weights_records_them_and_one_without_entries_accepts_anything(started):
    folder, ledger = started
    ledger.update("base", weights_sha256=None)
    check_resume(ledger, _cfg(folder))
    assert Ledger(ledger.path).get("base")["weights_sha256"] == weights_sha256(folder / "base" / "best")
    fresh = Ledger.in_run_dir(folder / "fresh")
    fresh.meta["config"] = to_dict(_cfg(folder))
    check_resume(fresh, _cfg(folder, train={"epochs": 9}))


def test_effvid_shrink_exits_2_with_the_one_line_reason(started, capsys):
    folder, ledger = started
    config = folder / "pas.yaml"
    config.write_text(yaml.safe_dump(_data(folder)))
    assert main(["shrink", str(config), "train.epochs=3", "--json"]) == 2
    out, err = capsys.readouterr()
    reply = json.loads(out)
    assert reply["exit"] == 2 and "made with train.epochs=2, the config now says 3" in reply["error"]
    assert str(ledger.path) in err and len(err.strip().splitlines()) == 1
    assert Ledger(ledger.path).meta["config"]["train"]["epochs"] == 2  # the refused config is not recorded
