"""Training-stage helpers: which parameters train, the stage-aware LR curve, and partial weight loading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from effvid.engine.schedules import ScheduleConfig, lr_factor
from effvid.engine.train_config import StageConfig
from effvid.errors import CheckpointError, ConfigError


def apply_stage_trainable(model: nn.Module, stage: StageConfig) -> int:
    """Set ``requires_grad`` per the stage's ``train``/``freeze`` globs; returns the trainable parameter count.

    A glob that matches no parameter name is a :class:`ConfigError` (most likely a typo).
    """
    names = [name for name, _ in model.named_parameters()]
    for pattern in [*stage.train, *stage.freeze]:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise ConfigError(f"stage {stage.name!r}: pattern {pattern!r} matches no parameter "
                              f"(names look like {names[0]!r})")
    count = 0
    for name, param in model.named_parameters():
        trains = (not stage.train or any(fnmatchcase(name, p) for p in stage.train)) and \
            not any(fnmatchcase(name, p) for p in stage.freeze)
        param.requires_grad_(trains)
        count += param.numel() if trains else 0
    if count == 0:
        raise ConfigError(f"stage {stage.name!r}: every parameter is frozen")
    return count


def stage_of_epoch(stages: Sequence[StageConfig], epoch: int) -> int:
    """Index of the stage that epoch ``epoch`` (0-based) belongs to."""
    end = 0
    for index, stage in enumerate(stages):
        end += stage.epochs
        if epoch < end:
            return index
    return len(stages) - 1


def build_stage_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, stages: Sequence[StageConfig], *,
                          iters_per_epoch: int) -> LambdaLR:
    """Per-iteration LambdaLR: the schedule's factor over the whole run times the current stage's ``lr_scale``.

    The factor depends only on the step count, so a resumed run (scheduler state loaded)
    continues the same curve.
    """
    total = sum(s.epochs for s in stages)
    if schedule.decay == "cosine" and total <= schedule.warmup_epochs:
        raise ConfigError(f"schedule: cosine decay needs more epochs ({total}) than warm-up ({schedule.warmup_epochs})")
    scales = [stages[stage_of_epoch(stages, e)].lr_scale for e in range(total)]

    def factor(step: int) -> float:
        epoch = step / iters_per_epoch
        return lr_factor(schedule, epoch, total) * scales[min(int(epoch), total - 1)]

    return LambdaLR(optimizer, factor)


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> tuple[int, int]:
    """Copy every tensor of ``state`` whose name and shape match ``model``'s; ``(copied, total)``.

    Nothing matching at all is a :class:`CheckpointError` naming ``source``.
    """
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise CheckpointError(f"{source}: no tensor of this checkpoint fits the model (names or shapes all differ)")
    model.load_state_dict(matched, strict=False)
    return len(matched), len(own)
