"""Training-stage helpers: which parameters train in a stage, the stage of an epoch, parameter groups
with their learning-rate multipliers, and partial weight loading."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

import torch
from torch import nn

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


def lr_groups(model: nn.Module, lr_mult: Mapping[str, float]) -> list[dict]:
    """``model``'s parameters as optimizer groups: those no glob of ``lr_mult`` matches (at ``1``,
    first, so the logged rate is the base one), then one group per glob (its ``lr_mult`` recorded;
    the trainer multiplies the base rate by it).
    A parameter takes the first glob it matches; a glob that matches nothing is a :class:`ConfigError`."""
    patterns = list(lr_mult)
    buckets: dict[str | None, list[nn.Parameter]] = {p: [] for p in patterns}
    buckets[None] = []
    for name, param in model.named_parameters():
        buckets[next((p for p in patterns if fnmatchcase(name, p)), None)].append(param)
    empty = [p for p in patterns if not buckets[p]]
    if empty:
        raise ConfigError(f"optim.lr_mult: pattern {empty[0]!r} matches no parameter of the model")
    rest = [{"params": buckets[None], "lr_mult": 1.0}] if buckets[None] else []
    return rest + [{"params": buckets[p], "lr_mult": float(lr_mult[p])} for p in patterns]


def stage_of_epoch(stages: Sequence[StageConfig], epoch: int) -> int:
    """Index of the stage that epoch ``epoch`` (0-based) belongs to."""
    end = 0
    for index, stage in enumerate(stages):
        end += stage.epochs
        if epoch < end:
            return index
    return len(stages) - 1


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
