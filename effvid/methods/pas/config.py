"""The PAS config schema: what ``effvid shrink CONFIG`` reads (via :func:`effvid.config.load_config`).

A YAML file names the base network (a checkpoint, or a model plus a recipe to train it first
with plain cross-entropy), the data, the reduction operators and their factors, when to stop
(``iterations`` and/or ``target_gmacs``), the training recipe of every hypothesis (``train``:
the keys of :class:`~effvid.engine.train_config.TrainConfig` that do not name the run, model,
data, teacher or initialisation), the distillation settings, the resources of one hypothesis,
retries, the ablation switches and the without-PAS control. See ``configs/pas/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effvid.config import from_dict, load_config, to_dict
from effvid.engine.losses import DistillConfig
from effvid.engine.train_config import DataConfig, ModelConfig, TrainConfig
from effvid.errors import ConfigError
from effvid.methods.pas.operators import DEFAULT_GAMMAS, OPERATORS, parse_operators
from effvid.spec import ArchSpec

RECIPE_RESERVED = ("run_dir", "model", "data", "distill", "init_from", "init_lr_scale", "resume")
"""TrainConfig keys PAS sets per hypothesis; a ``train`` recipe may not contain them."""


@dataclass(frozen=True)
class BaseConfig:
    """The base network B: a trained ``checkpoint``, or a ``model`` trained first with the ``train`` recipe (CE only).

    ``train`` defaults to the hypotheses' recipe.
    """

    checkpoint: str | None = None
    model: ModelConfig | None = None
    train: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.checkpoint is None) == (self.model is None):
            raise ConfigError("base: give exactly one of 'checkpoint' (a trained base) or 'model' (trained first)")
        if self.checkpoint is not None and self.train is not None:
            raise ConfigError("base.train: a recipe only applies when the base is trained first (base.model)")


@dataclass(frozen=True)
class ResourcesConfig:
    """What one hypothesis asks Ray for; ``num_gpus > 1`` trains it data-parallel (Ray Train)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if not self.num_cpus > 0 or self.num_gpus < 0:
            raise ConfigError(f"resources: need num_cpus > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ConfigError(f"resources.num_gpus: more than one GPU must be a whole number, got {self.num_gpus}")

    @property
    def distributed(self) -> bool:
        """Whether a hypothesis trains as DDP over several GPUs (Ray Train's TorchTrainer)."""
        return self.num_gpus > 1


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray: ``address`` joins a cluster; without it a quiet local instance starts.

    ``num_cpus``/``num_gpus`` size the local instance (default: the whole machine);
    ``object_store_mb`` its object store.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    object_store_mb: int = 200


@dataclass(frozen=True)
class ShrinkConfig:
    """A whole PAS run (see the module docstring).

    ``cost_tolerance``: Eq. (3) (highest top-1) selects when the hypotheses' cost ratios
    C(h)/C(R_prev) agree (largest / smallest <= 1 + cost_tolerance), Eq. (1) otherwise.
    ``distill: false`` trains hypotheses with CE only and ``finetune: false`` starts every
    hypothesis from random weights (Table 4); ``distillation`` holds the KD settings (t, alpha,
    teacher BN mode, intermediate-feature terms: Tables 6 and 7); ``control: true`` trains each
    selected architecture from scratch with CE after the search (Table 2), with the
    ``control_train`` recipe (default: the hypotheses' ``train``, the same budget; give the
    base's recipe for a full-length control). ``retries`` is how
    many times a failed hypothesis is tried again in one invocation. ``latency_repeats`` timed
    batch-1 CPU forwards with ``latency_threads`` threads give each reported model's median
    latency (0: not measured).
    """

    run_dir: str
    data: DataConfig
    base: BaseConfig
    train: dict[str, Any]
    name: str | None = None
    operators: list[str] = field(default_factory=lambda: list(OPERATORS))
    gammas: dict[str, float] = field(default_factory=dict)
    iterations: int = 5
    target_gmacs: float | None = None
    cost_tolerance: float = 0.1
    distill: bool = True
    distillation: DistillConfig = field(default_factory=DistillConfig)
    finetune: bool = True
    finetune_lr_scale: float = 0.1
    control: bool = False
    control_train: dict[str, Any] | None = None
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    retries: int = 1
    latency_repeats: int = 10
    latency_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", list(parse_operators(self.operators)))
        if not self.operators:
            raise ConfigError("operators: name at least one of " + ",".join(OPERATORS))
        unknown = sorted(set(self.gammas) - set(OPERATORS))
        if unknown:
            raise ConfigError(f"gammas: unknown operator(s) {', '.join(unknown)}")
        for name, gamma in self.gammas.items():
            if not gamma > 1:
                raise ConfigError(f"gammas.{name} must be greater than 1, got {gamma}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.target_gmacs is not None and not self.target_gmacs > 0:
            raise ConfigError(f"target_gmacs must be positive or null, got {self.target_gmacs}")
        if self.cost_tolerance < 0:
            raise ConfigError(f"cost_tolerance must be >= 0, got {self.cost_tolerance}")
        if not self.finetune_lr_scale > 0:
            raise ConfigError(f"finetune_lr_scale must be positive, got {self.finetune_lr_scale}")
        if self.retries < 0 or self.latency_repeats < 0 or self.latency_threads < 1:
            raise ConfigError("retries and latency_repeats must be >= 0, latency_threads >= 1")
        if self.data.val is None:
            raise ConfigError("data.val: PAS selects hypotheses by validation accuracy; name a validation annotation")
        if self.distillation.teacher is not None:
            raise ConfigError("distillation.teacher: PAS always distils from the base network; leave it unset")
        _check_recipe(self.train, "train")
        for key, recipe in (("base.train", self.base.train), ("control_train", self.control_train)):
            if recipe is not None:
                _check_recipe(recipe, key)

    def gamma(self, operator: str) -> float:
        """The factor of ``operator`` (configured, else the paper's default)."""
        return float(self.gammas.get(operator, DEFAULT_GAMMAS[operator]))

    def train_config(self, run_dir: str | Path, *, spec: ArchSpec | None = None, model: ModelConfig | None = None,
                     teacher: str | None = None, init_from: str | None = None, recipe: dict[str, Any] | None = None
                     ) -> TrainConfig:
        """The TrainConfig of one training in ``run_dir``: the recipe plus the model, data and KD/init settings.

        ``teacher`` adds the configured distillation from that checkpoint; ``init_from`` starts
        from those weights with the learning rate times ``finetune_lr_scale``.
        """
        if (spec is None) == (model is None):
            raise ValueError("train_config needs exactly one of spec= or model=")
        model_cfg = model if model is not None else ModelConfig(spec=spec.to_dict())
        data = dict(recipe if recipe is not None else self.train)
        data.update(run_dir=str(run_dir), model=to_dict(model_cfg), data=to_dict(self.data), resume="auto")
        if teacher is not None:
            data["distill"] = {**to_dict(self.distillation), "teacher": str(teacher)}
        if init_from is not None:
            data.update(init_from=str(init_from), init_lr_scale=self.finetune_lr_scale)
        return from_dict(TrainConfig, data, source=f"{self.run_dir} (PAS training recipe)")


def _check_recipe(recipe: dict[str, Any], key: str) -> None:
    reserved = sorted(set(recipe) & set(RECIPE_RESERVED))
    if reserved:
        raise ConfigError(f"{key}: PAS sets {', '.join(reserved)} for every hypothesis; remove them from the recipe")
    probe = {**recipe, "run_dir": ".", "model": {"name": "probe"}, "data": {"train": "probe"}}
    from_dict(TrainConfig, probe, source=f"config key {key!r}")


def load_shrink_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ShrinkConfig:
    """Read a PAS YAML with ``key=value`` overrides into a validated :class:`ShrinkConfig`."""
    return load_config(path, ShrinkConfig, overrides)
