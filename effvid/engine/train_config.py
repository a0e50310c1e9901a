"""The training config schema: what ``effvid train CONFIG`` reads (via :func:`effvid.config.load_config`).

A YAML file names the model (a registered family plus ArchSpec overrides, or a full ``spec``
mapping), the data, the optimizer and learning-rate schedule, optional training stages, the
loss terms, optional distillation from a frozen teacher, and the run's bookkeeping. Every key
is typed; an unknown key or a wrong type is a :class:`~effvid.errors.ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from effvid.config import load_config
from effvid.engine.losses import DistillConfig, LossTermConfig
from effvid.engine.schedules import OptimConfig, ScheduleConfig
from effvid.engine.trackers import LogConfig
from effvid.errors import ConfigError
from effvid.models.registry import default_spec
from effvid.spec import ArchSpec


@dataclass(frozen=True)
class PretrainedConfig:
    """Weights to start from: a checkpoint ``path`` in ``source``'s layout (effvid, torchvision,
    PyTorchVideo or PySlowFast), loaded strictly by :func:`effvid.models.load_pretrained`.
    A classifier for another class count is replaced when ``replace_head`` is true. ``into``
    names the submodule to fill (a dynamic model's branch, e.g. ``branches.0``; empty: the
    whole model), so each part of a composite model can start from its own checkpoint."""

    path: str
    source: Literal["effvid", "torchvision", "pytorchvideo", "pyslowfast"] = "effvid"
    replace_head: bool = True
    into: str = ""


class _ModelConfigBase:
    """A registered model ``name`` with ArchSpec overrides, or a complete ``spec`` mapping (PAS uses that).

    Every :class:`~effvid.spec.ArchSpec` field but ``name`` is an optional override here (the
    fields are read from ArchSpec itself, so the two cannot drift apart); ``num_classes`` comes
    from the training annotation unless given. ``pretrained`` (one entry or a list, each into
its own submodule) loads weights after building.
    """

    name: str | None
    spec: dict[str, Any] | None
    pretrained: PretrainedConfig | None

    def overrides(self) -> dict[str, Any]:
        """The ArchSpec fields this config sets (everything but name, spec and pretrained)."""
        return {k: getattr(self, k) for k in _SPEC_FIELDS if k != "num_classes" and getattr(self, k) is not None}

    def __post_init__(self) -> None:
        if self.name is None and self.spec is None:
            raise ConfigError("model: give a registered model 'name' (see `effvid models`) or a full 'spec'")
        if self.spec is not None:
            overridden = sorted(self.overrides())
            if overridden:
                raise ConfigError(f"model: 'spec' is complete; set {', '.join(overridden)} inside it instead")
            if self.name is not None and self.spec.get("name") not in (None, self.name):
                raise ConfigError(f"model: name {self.name!r} differs from spec.name {self.spec.get('name')!r}")

    def to_spec(self, num_classes: int) -> ArchSpec:
        """The ArchSpec to build; ``num_classes`` is used unless the config fixes it."""
        classes = self.num_classes if self.num_classes is not None else num_classes
        if self.spec is not None:
            data = dict(self.spec)
            data.setdefault("name", self.name)
            if self.num_classes is not None or "num_classes" not in data:
                data["num_classes"] = classes
            return ArchSpec.from_dict(data)
        overrides = self.overrides()
        if "family" in overrides:  # a family setting changes that setting, not the whole family
            overrides["family"] = {**default_spec(self.name).family, **overrides["family"]}
        return default_spec(self.name, num_classes=classes, **overrides)


_SPEC_FIELDS = [f.name for f in dataclasses.fields(ArchSpec) if f.name != "name"]
_SPEC_TYPES = typing.get_type_hints(ArchSpec)
ModelConfig = dataclasses.make_dataclass(
    "ModelConfig",
    [("name", str | None, dataclasses.field(default=None)),
     ("spec", dict[str, Any] | None, dataclasses.field(default=None)),
     *((name, _SPEC_TYPES[name] | None, dataclasses.field(default=None)) for name in _SPEC_FIELDS),
     ("pretrained", PretrainedConfig | list[PretrainedConfig] | None, dataclasses.field(default=None))],
    bases=(_ModelConfigBase,), frozen=True)
ModelConfig.__module__ = __name__
ModelConfig.__doc__ = _ModelConfigBase.__doc__


@dataclass(frozen=True)
class DataConfig:
    """Training and validation annotations and how to read them.

    ``val_views`` is ``[K, C]``: K temporal clips x C spatial crops per validation video.
    ``root`` joins relative video paths (default: the annotation's folder). ``classes`` is a
    class-names file (default: ``classes.txt`` beside the annotation, if any). ``cache: memory``
    keeps the decoded training videos in memory (bounded by ``cache_bytes_max``, default half
    the available memory), so epochs after the first decode nothing: for datasets that fit.
    ``clips_per_video`` random clips of every training video make one epoch (temporal
    jittering, PAS section 4.2 uses 3): each its own random start and augmentation, so an
    epoch has that many times the steps.
    """

    train: str
    val: str | None = None
    root: str | None = None
    format: str = "auto"
    classes: str | None = None
    backend: str = "pyav"
    on_error: Literal["raise", "skip"] = "raise"
    num_workers: int = 2
    target_fps: float | None = None
    flip: bool = False
    val_views: tuple[int, int] = (1, 1)
    val_batch_size: int | None = None
    cache: Literal["none", "memory"] = "none"
    cache_bytes_max: int | None = None
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if isinstance(self.clips_per_video, bool) or not isinstance(self.clips_per_video, int) or self.clips_per_video < 1:
            raise ConfigError(f"data.clips_per_video must be an integer >= 1, got {self.clips_per_video!r}")
        if self.val_views[0] < 1 or self.val_views[1] not in (1, 3):
            raise ConfigError(f"data.val_views must be [K >= 1, C in (1, 3)], got {list(self.val_views)}")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: its epochs, a learning-rate scale, which parameters train, which losses count.

    ``train`` and ``freeze`` are glob patterns over parameter names (``fnmatch``, e.g.
    ``"policy.*"``); a parameter trains when it matches ``train`` (empty: every parameter) and
    no ``freeze`` pattern. ``losses`` lists the active loss terms (empty: all of them).
    """

    name: str
    epochs: int
    lr_scale: float = 1.0
    train: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"stage {self.name!r}: epochs must be >= 1, got {self.epochs}")
        if not self.lr_scale > 0:
            raise ConfigError(f"stage {self.name!r}: lr_scale must be positive, got {self.lr_scale}")


BEST_METRICS = ("video_top1", "video_top5", "clip_top1", "mean_class_acc", "mAP")
"""The validation metrics a run can keep its best checkpoint by (see :mod:`effvid.engine.metrics`)."""


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run (see the module docstring and ``configs/*.yaml`` for examples).

    With ``stages`` the run is their concatenation and ``epochs`` must equal their sum. The
    learning rate is ``optim.lr`` (times ``init_lr_scale`` when ``init_from`` is set) times the
    schedule's factor times the current stage's ``lr_scale``. ``clip_grad`` is the maximum
    global gradient L2 norm (``None``: no clipping).
    ``max_steps_per_epoch`` caps the iterations of each epoch (quick runs and tests).
    ``resume``: ``auto`` continues after the last complete epoch checkpoint of ``run_dir`` when
    the config matches the one it was trained with (settings that change where or how fast it
    runs aside, :data:`~effvid.engine.rundir.RESUME_MAY_CHANGE`), and stops naming the keys
    otherwise; ``force`` continues with the new settings; ``never`` starts over.
    ``best_metric`` is one of :data:`BEST_METRICS` (higher is better). ``log`` sends the config and
    per-epoch metrics to MLflow or Weights & Biases (:mod:`effvid.engine.trackers`).
    """

    run_dir: str
    epochs: int
    batch_size: int
    model: ModelConfig
    data: DataConfig
    seed: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    stages: list[StageConfig] = field(default_factory=list)
    losses: list[LossTermConfig] = field(default_factory=lambda: [LossTermConfig("ce")])
    label_smoothing: float = 0.0
    distill: DistillConfig | None = None
    init_from: str | None = None
    init_lr_scale: float = 1.0
    resume: Literal["auto", "never", "force"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16", "fp16"] = "off"
    clip_grad: float | None = None
    sync_bn: bool = False
    find_unused_parameters: bool = False
    precise_bn_batches: int = 0
    eval_every: int = 1
    log_every: int = 20
    max_steps_per_epoch: int | None = None
    best_metric: str = "video_top1"
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.stages and sum(s.epochs for s in self.stages) != self.epochs:
            raise ConfigError(f"epochs is {self.epochs} but the stages add up to {sum(s.epochs for s in self.stages)}")
        if len({s.name for s in self.stages}) != len(self.stages):
            raise ConfigError("stage names must be unique")
        if len({t.name for t in self.losses}) != len(self.losses):
            raise ConfigError("loss term names must be unique")
        if not self.init_lr_scale > 0:
            raise ConfigError(f"init_lr_scale must be positive, got {self.init_lr_scale}")
        if self.eval_every < 1 or self.log_every < 1:
            raise ConfigError("eval_every and log_every must be >= 1")
        if self.precise_bn_batches < 0:
            raise ConfigError(f"precise_bn_batches must be >= 0, got {self.precise_bn_batches}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"max_steps_per_epoch must be >= 1 or null, got {self.max_steps_per_epoch}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.best_metric not in BEST_METRICS:
            raise ConfigError(f"best_metric {self.best_metric!r} is not a validation metric (choose from "
                              f"{', '.join(BEST_METRICS)})")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ConfigError(f"clip_grad must be positive or null, got {self.clip_grad}")

    def stage_plan(self) -> list[StageConfig]:
        """The stages to run: the configured ones, or one stage ``"train"`` of ``epochs``."""
        return list(self.stages) if self.stages else [StageConfig(name="train", epochs=self.epochs)]

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with top-level fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training YAML with ``key=value`` overrides into a validated :class:`TrainConfig`."""
    return load_config(path, TrainConfig, overrides)
