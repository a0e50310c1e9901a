"""Typed YAML configs: nested dataclasses, overrides, and errors that name the key and the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from effvid.config import dump_yaml, load_config, to_dict
from effvid.engine.losses import DistillConfig, LossTermConfig
from effvid.engine.schedules import OptimConfig, ScheduleConfig
from effvid.errors import ConfigError
from effvid.spec import ArchSpec


@dataclass(frozen=True)
class StageCfg:
    name: str
    epochs: int
    lr_scale: float = 1.0
    losses: list[str] | None = None


@dataclass(frozen=True)
class RunCfg:
    model: ArchSpec
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    loss_terms: list[LossTermConfig] = field(default_factory=list)
    stages: list[StageCfg] = field(default_factory=list)
    views: tuple[int, int] = (10, 1)
    tags: dict[str, float] = field(default_factory=dict)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out: Path | None = None


CONFIG = """
model: {name: r2plus1d_18, num_classes: 10, crop_size: 64, train_resize: [72, 90]}
optim: {name: sgd, lr: 1, nesterov: true}
schedule: {warmup_epochs: 2, decay: step, milestones: [10, 20]}
distill: {teacher: runs/base/checkpoints/best, feature: margin_relu}
loss_terms:
  - {name: efficiency, weight: 0.1, schedule: linear, final_weight: 1.0, ramp_epochs: 5}
stages:
  - {name: warmup, epochs: 3, losses: [ce]}
  - {name: joint, epochs: 5, lr_scale: 0.1}
views: [4, 3]
tags: {a: 1, b: 2.5}
out: runs/x
"""


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    return path


def test_nested_dataclasses_load_with_types_converted(cfg_file: Path) -> None:
    cfg = load_config(cfg_file, RunCfg)
    assert cfg.model == ArchSpec(name="r2plus1d_18", num_classes=10, crop_size=64, train_resize=(72, 90))
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.optim.nesterov
    assert cfg.schedule.milestones == [10.0, 20.0]
    assert cfg.distill.feature == "margin_relu" and cfg.distill.temperature == 5.0 and cfg.distill.alpha == "auto"
    assert cfg.loss_terms[0].weight_at(5) == pytest.approx(1.0)
    assert [s.name for s in cfg.stages] == ["warmup", "joint"] and cfg.stages[0].losses == ["ce"]
    assert cfg.views == (4, 3) and cfg.tags == {"a": 1.0, "b": 2.5} and cfg.out == Path("runs/x")


def test_dumped_yaml_round_trips(cfg_file: Path, tmp_path: Path) -> None:
    cfg = load_config(cfg_file, RunCfg, ["optim.lr=0.01"])
    dump_yaml(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", RunCfg)
    assert again == cfg
    assert to_dict(again)["model"]["train_resize"] == [72, 90]


def test_overrides_set_nested_keys_list_items_and_lists(cfg_file: Path) -> None:
    cfg = load_config(cfg_file, RunCfg, ["optim.lr=0.05", "stages.1.epochs=7", "schedule.milestones=[3, 6]",
                                         "model.crop_size=48", "distill.teacher=", "device=cpu"])
    assert cfg.optim.lr == 0.05 and cfg.stages[1].epochs == 7 and cfg.schedule.milestones == [3.0, 6.0]
    assert cfg.model.crop_size == 48 and cfg.distill.teacher is None and cfg.device == "cpu"


def test_unknown_key_names_the_key_path_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\noptim: {lr: 0.1, momentun: 0.9}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, RunCfg)
    assert "optim.momentun" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_the_key_path_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\nstages:\n  - {name: a, epochs: three}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, RunCfg)
    message = str(err.value)
    assert "stages[0].epochs" in message and str(path) in message and "integer" in message


def test_literal_and_bool_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x}\noptim: {name: adam}\n")
    with pytest.raises(ConfigError, match=r"optim\.name.*'sgd', 'adamw'"):
        load_config(path, RunCfg)
    path.write_text("model: {name: x}\noptim: {nesterov: 1}\n")
    with pytest.raises(ConfigError, match=r"optim\.nesterov.*true or false"):
        load_config(path, RunCfg)


def test_bad_overrides_quote_the_override_and_the_file(cfg_file: Path) -> None:
    for text, expected in [("optim.lrr=0.1", "optim.lrr"), ("optim.lr=fast", "number"),
                           ("stages.x.epochs=1", "list"), ("optim.lr", "key=value")]:
        with pytest.raises(ConfigError) as err:
            load_config(cfg_file, RunCfg, [text])
        assert repr(text) in str(err.value) and expected in str(err.value)
        if "=" in text:
            assert str(cfg_file) in str(err.value)


def test_missing_required_key_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("optim: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        load_config(path, RunCfg)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", RunCfg)


def test_schema_validation_errors_carry_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name: x, num_frames: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, RunCfg)
    assert str(path) in str(err.value) and "'model'" in str(err.value) and "num_frames" in str(err.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("model: {name: x}\noptim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML \(line"):
        load_config(path, RunCfg)


def test_a_config_extends_its_bases_then_overrides_apply(tmp_path: Path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "model.yaml").write_text("model: {name: r2plus1d_18, num_frames: 8, crop_size: 64}\n"
                                                    "optim: {name: sgd, lr: 0.1}\nviews: [10, 3]\n")
    (tmp_path / "common" / "tags.yaml").write_text("base: model.yaml\ntags: {a: 1.0}\noptim: {lr: 0.2}\n")
    (tmp_path / "run.yaml").write_text("base: [common/tags.yaml]\nmodel: {crop_size: 32}\ntags: {b: 2.0}\n")
    cfg = load_config(tmp_path / "run.yaml", RunCfg, ["optim.lr=0.5"])
    assert (cfg.model.name, cfg.model.num_frames, cfg.model.crop_size) == ("r2plus1d_18", 8, 32)
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.5 and cfg.views == (10, 3)
    assert cfg.tags == {"a": 1.0, "b": 2.0}


def test_bases_that_extend_each_other_in_a_circle_are_one_clear_error(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="in a circle"):
        load_config(tmp_path / "a.yaml", RunCfg)
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "c.yaml", RunCfg)


def test_a_pas_base_mapping_is_not_inheritance(tmp_path: Path):
    from effvid.methods.pas.config import load_shrink_config

    (tmp_path / "pas.yaml").write_text("run_dir: r\ndata: {train: t.txt, val: v.txt}\nbase: {checkpoint: b}\n"
                                       "train: {epochs: 1, batch_size: 2}\n")
    assert load_shrink_config(tmp_path / "pas.yaml").base.checkpoint == "b"
