"""Optimizers, learning-rate schedules and per-epoch loss-weight schedules.

The learning rate is a pure function of the (fractional) epoch: a linear warm-up, then step
or cosine decay (:func:`lr_factor`). :func:`build_lr_scheduler` wraps it in a
:class:`torch.optim.lr_scheduler.LambdaLR` stepped once per iteration; its ``state_dict``
holds only plain numbers, so it round-trips through ``torch.load(weights_only=True)`` and a
resumed run continues the same curve. Loss-term weights follow :func:`scheduled_weight`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

from effvid.errors import ConfigError

WeightScheduleKind = Literal["constant", "linear", "exponential"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings (gradient clipping is the trainer's ``clip_grad``).

    ``lr_mult`` maps parameter-name globs to learning-rate multipliers (``{"*.gate.*": 20}``:
    a dynamic model's gates learn 20 times faster than its backbone); a parameter takes the first
    glob it matches, in the order written, and the others the base rate.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_mult: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        bad = {k: v for k, v in self.lr_mult.items() if not v > 0}
        if bad:
            raise ConfigError(f"optim.lr_mult: multipliers must be positive, got {bad}")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError("optim.nesterov needs name: sgd and a positive momentum")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: warm-up then ``decay``.

    During the first ``warmup_epochs`` the factor rises linearly from ``warmup_start_factor``
    to 1. ``step`` multiplies by ``gamma`` at each epoch in ``milestones`` (absolute epochs);
    ``cosine`` falls from 1 after the warm-up to ``final_factor`` at the last epoch;
    ``constant`` keeps 1.
    """

    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    decay: Literal["step", "cosine", "constant"] = "step"
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    final_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0:
            raise ConfigError(f"schedule.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.warmup_start_factor <= 1:
            raise ConfigError(f"schedule.warmup_start_factor must be in [0, 1], got {self.warmup_start_factor}")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"schedule.milestones must be increasing, got {list(self.milestones)}")
        if not self.gamma > 0:
            raise ConfigError(f"schedule.gamma must be positive, got {self.gamma}")
        if not 0 <= self.final_factor <= 1:
            raise ConfigError(f"schedule.final_factor must be in [0, 1], got {self.final_factor}")


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
                    cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over ``params`` (tensors or param-group dicts)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(cfg: ScheduleConfig, epoch: float, total_epochs: float) -> float:
    """The multiplier of the base learning rate at fractional ``epoch`` of a ``total_epochs`` run."""
    warm = 1.0
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        warm = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * epoch / cfg.warmup_epochs
    if cfg.decay == "step":
        decay = cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    elif cfg.decay == "cosine":
        span = total_epochs - cfg.warmup_epochs
        progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0) if span > 0 else 1.0
        decay = cfg.final_factor + (1.0 - cfg.final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        decay = 1.0
    return warm * decay


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, total_epochs: int,
                       iters_per_epoch: int, epoch_scales: Sequence[float] | None = None) -> LambdaLR:
    """A per-iteration LambdaLR following :func:`lr_factor`; call ``.step()`` after every optimizer step.

    ``epoch_scales[e]`` multiplies the factor during epoch ``e`` (a training stage's
    ``lr_scale``; default 1). The factor depends only on the step count and its ``state_dict``
    holds only numbers (the lambda is a closure), so it survives ``torch.load(weights_only=True)``
    and a resumed run, its state loaded into a scheduler built with the same arguments,
    continues the same curve.
    """
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    if cfg.decay == "cosine" and total_epochs <= cfg.warmup_epochs:
        raise ConfigError(f"schedule: cosine decay needs more epochs ({total_epochs}) than warm-up ({cfg.warmup_epochs})")
    scales = list(epoch_scales) if epoch_scales is not None else [1.0] * total_epochs
    if len(scales) != total_epochs:
        raise ValueError(f"epoch_scales has {len(scales)} entries for {total_epochs} epochs")

    def factor(step: int) -> float:
        epoch = step / iters_per_epoch
        return lr_factor(cfg, epoch, total_epochs) * scales[min(int(epoch), total_epochs - 1)]

    return LambdaLR(optimizer, factor)


def scheduled_weight(kind: WeightScheduleKind, weight: float, epoch: float, *, final_weight: float | None = None,
                     start_epoch: float = 0.0, ramp_epochs: float | None = None,
                     rate: float | None = None) -> float:
    """A loss weight at fractional ``epoch``; ``weight`` holds until ``start_epoch``.

    * ``constant``: ``weight``.
    * ``linear``: from ``weight`` at ``start_epoch`` to ``final_weight`` at ``start_epoch +
      ramp_epochs``, then ``final_weight``.
    * ``exponential``: ``weight * exp(rate * (epoch - start_epoch))`` (the AR-Net/D-STEP
      annealing form), never past ``final_weight`` when one is given.
    """
    elapsed = max(0.0, epoch - start_epoch)
    if kind == "constant":
        return weight
    if kind == "linear":
        if final_weight is None or ramp_epochs is None or ramp_epochs <= 0:
            raise ConfigError("a linear weight schedule needs final_weight and a positive ramp_epochs")
        return weight + (final_weight - weight) * min(elapsed / ramp_epochs, 1.0)
    if kind == "exponential":
        if rate is None:
            raise ConfigError("an exponential weight schedule needs a rate (per epoch)")
        value = weight * math.exp(rate * elapsed)
        if final_weight is not None:
            value = max(value, final_weight) if rate < 0 else min(value, final_weight)
        return value
    raise ConfigError(f"unknown weight schedule {kind!r}; use constant, linear or exponential")
