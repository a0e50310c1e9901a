"""Learning-rate warm-up and decay, resumable per-iteration schedulers, and loss-weight schedules."""

from __future__ import annotations

import io
import math

import pytest
import torch

from effvid.engine.losses import LossTermConfig
from effvid.engine.schedules import (
    OptimConfig,
    ScheduleConfig,
    build_lr_scheduler,
    build_optimizer,
    lr_factor,
    scheduled_weight,
)
from effvid.errors import ConfigError


def test_step_schedule_with_linear_warmup_matches_the_pas_recipe() -> None:
    cfg = ScheduleConfig(warmup_epochs=10, warmup_start_factor=0.0, decay="step", milestones=[20, 30, 40], gamma=0.1)
    assert lr_factor(cfg, 0, 45) == 0.0
    assert lr_factor(cfg, 5, 45) == pytest.approx(0.5)
    assert lr_factor(cfg, 10, 45) == 1.0
    assert lr_factor(cfg, 19.99, 45) == 1.0
    assert lr_factor(cfg, 20, 45) == pytest.approx(0.1)
    assert lr_factor(cfg, 35, 45) == pytest.approx(0.01)
    assert lr_factor(cfg, 44.5, 45) == pytest.approx(0.001)


def test_cosine_schedule_starts_after_warmup_and_ends_at_the_final_factor() -> None:
    cfg = ScheduleConfig(warmup_epochs=2, warmup_start_factor=0.1, decay="cosine", final_factor=0.01)
    assert lr_factor(cfg, 0, 12) == pytest.approx(0.1)
    assert lr_factor(cfg, 1, 12) == pytest.approx(0.55)
    assert lr_factor(cfg, 2, 12) == pytest.approx(1.0)
    assert lr_factor(cfg, 7, 12) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(cfg, 12, 12) == pytest.approx(0.01)


def test_per_iteration_scheduler_follows_fractional_epochs() -> None:
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model.parameters(), OptimConfig(lr=0.4, nesterov=True))
    sched = build_lr_scheduler(opt, ScheduleConfig(warmup_epochs=1, warmup_start_factor=0.0, milestones=[2]),
                               total_epochs=3, iters_per_epoch=4)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.04, 0.04, 0.04, 0.04])


def test_scheduler_state_round_trips_through_weights_only_load() -> None:
    def make():
        model = torch.nn.Linear(2, 2)
        opt = build_optimizer(model.parameters(), OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05))
        sched = build_lr_scheduler(opt, ScheduleConfig(warmup_epochs=1, decay="cosine"), total_epochs=4,
                                   iters_per_epoch=5)
        return opt, sched

    opt, sched = make()
    for _ in range(7):
        opt.step()
        sched.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buffer)
    expected = []
    for _ in range(6):
        opt.step()
        sched.step()
        expected.append(opt.param_groups[0]["lr"])

    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    opt2, sched2 = make()
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(6):
        opt2.step()
        sched2.step()
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == pytest.approx(expected)
    assert expected[0] != expected[-1]


def test_loss_weight_schedules() -> None:
    assert scheduled_weight("constant", 0.3, 17) == 0.3
    linear = LossTermConfig(name="eff", weight=0.0, schedule="linear", final_weight=2.0, start_epoch=2, ramp_epochs=4)
    assert [linear.weight_at(e) for e in (0, 2, 3, 6, 9)] == pytest.approx([0.0, 0.0, 0.5, 2.0, 2.0])
    decay = LossTermConfig(name="tau", weight=5.0, schedule="exponential", rate=-0.045)
    assert decay.weight_at(46) == pytest.approx(5 * math.exp(-0.045 * 46))
    floor = LossTermConfig(name="p", weight=1.0, schedule="exponential", rate=-1.0, final_weight=0.2)
    assert floor.weight_at(0.5) == pytest.approx(math.exp(-0.5)) and floor.weight_at(10) == 0.2


def test_incomplete_schedules_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'eff'.*final_weight"):
        LossTermConfig(name="eff", schedule="linear")
    with pytest.raises(ConfigError, match="rate"):
        LossTermConfig(name="tau", schedule="exponential")
    with pytest.raises(ConfigError, match="milestones"):
        ScheduleConfig(milestones=[30, 10])
    with pytest.raises(ConfigError, match="nesterov"):
        OptimConfig(name="adamw", nesterov=True)


def test_stage_lr_scales_multiply_the_schedule_per_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, ScheduleConfig(decay="constant"), total_epochs=3, iters_per_epoch=2,
                               epoch_scales=[1.0, 0.1, 0.01])
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="epoch_scales"):
        build_lr_scheduler(opt, ScheduleConfig(), total_epochs=3, iters_per_epoch=2, epoch_scales=[1.0])


def test_lr_mult_puts_matching_parameters_in_their_own_group_at_a_multiple_of_the_rate(subset_annotation,
                                                                                        write_config, tiny_spec):
    from effvid.engine.optim import lr_groups
    from effvid.engine.train_config import load_train_config
    from effvid.engine.trainer import train
    from effvid.models import create_from_spec
    from effvid.report.plots import read_metrics

    model = create_from_spec(tiny_spec())
    base, head = lr_groups(model, {"fc.*": 10.0})
    assert base["lr_mult"] == 1.0 and head["lr_mult"] == 10.0
    assert {id(p) for p in head["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert len(base["params"]) + 2 == len(list(model.parameters()))
    with pytest.raises(ConfigError, match="'nothing.*' matches no parameter"):
        lr_groups(model, {"nothing.*": 2.0})
    with pytest.raises(ConfigError, match="multipliers must be positive"):
        OptimConfig(lr_mult={"fc.*": 0.0})

    cfg = load_train_config(write_config(subset_annotation(4), None, epochs=1,
                                         optim={"lr": 0.01, "lr_mult": {"fc.*": 10}},
                                         schedule={"decay": "constant"}))
    result = train(cfg, progress=False)
    assert read_metrics(f"{result.run_dir}/metrics.jsonl")[0]["lr"] == pytest.approx(0.01)  # the base group's
