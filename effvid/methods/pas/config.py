"""The PAS config schema: what ``effvid shrink CONFIG`` reads (via :func:`effvid.config.load_config`).

A YAML file names the base network (a checkpoint, or a model plus a recipe to train it first
with plain cross-entropy), the data, the reduction operators and their factors, when to stop
(``iterations`` and/or ``target_gmacs``), the training recipe of every hypothesis (``train``:
the keys of :class:`~effvid.engine.train_config.TrainConfig` that do not name the run, model,
data, teacher or initialisation), the distillation settings, the selection tolerances, the
resources of one hypothesis, retries, the ablation switches, the without-PAS control and the
Table-4 single-iteration ablation. See ``configs/pas/*.yaml``.

A resumed run must keep every setting that decides its results (:meth:`ShrinkConfig.result_settings`);
:data:`RESUME_FREE_KEYS` are the ones it may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from effvid.config import flatten, from_dict, load_config, to_dict
from effvid.engine.losses import DistillConfig
from effvid.engine.train_config import DataConfig, ModelConfig, TrainConfig
from effvid.errors import ConfigError
from effvid.methods.pas.operators import DEFAULT_GAMMAS, OPERATORS, parse_operators
from effvid.spec import ArchSpec

RECIPE_RESERVED = ("run_dir", "model", "data", "distill", "init_from", "init_lr_scale", "resume")
"""TrainConfig keys PAS sets per hypothesis; a ``train`` recipe may not contain them."""

INPUT_OPERATORS = ("s", "t", "f")
"""Operators that keep every weight's shape, so their hypotheses can start from R_{tau-1}'s weights."""

RESUME_FREE_KEYS = ("run_dir", "name", "iterations", "target_gmacs", "control", "ablation", "resources", "ray",
                    "retries", "latency_repeats", "latency_threads")
"""Top-level keys a resumed run may change: where the search stops, what it trains besides the
search, and how and where it runs. Every other key decides what a finished network or selection is
(``control_train`` once a control was trained: :func:`effvid.methods.pas.search.check_resume`)."""


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
    """What one hypothesis asks Ray for, and over how many processes it trains.

    ``num_cpus`` and ``num_gpus`` are the hypothesis's whole share. ``num_gpus > 1`` trains it
    data-parallel with Ray Train, one worker per GPU (NCCL). ``workers > 1`` with ``num_gpus: 0``
    trains it data-parallel over that many CPU workers (Gloo), each with ``num_cpus / workers``
    CPUs; with GPUs, ``workers`` is 1 or equals ``num_gpus``. One worker (the default) trains it
    in a single Ray task.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.num_cpus > 0 or self.num_gpus < 0:
            raise ConfigError(f"resources: need num_cpus > 0 and num_gpus >= 0, got {self.num_cpus}, {self.num_gpus}")
        if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
            raise ConfigError(f"resources.num_gpus: more than one GPU must be a whole number, got {self.num_gpus}")
        if self.workers < 1:
            raise ConfigError(f"resources.workers: need at least 1 worker, got {self.workers}")
        if self.workers > 1 and self.num_gpus > 0 and self.workers != self.num_gpus:
            raise ConfigError(f"resources.workers: {self.workers} GPU workers take one GPU each, so num_gpus must be "
                              f"{self.workers} (or 0 for CPU workers), got {self.num_gpus}")

    @property
    def num_workers(self) -> int:
        """How many processes one hypothesis trains over: one per GPU beyond one GPU, else ``workers``."""
        return int(self.num_gpus) if self.num_gpus > 1 else self.workers

    @property
    def distributed(self) -> bool:
        """Whether a hypothesis trains as DDP over several workers (Ray Train's TorchTrainer)."""
        return self.num_workers > 1


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
class AblationConfig:
    """Table 4: iteration ``iteration`` of a search trained again, for each input operator in
    ``operators``, once without KD but fine-tuned from R_{k-1} (``nokd``) and once with KD from
    random weights (``scratch``).

    ``operators`` defaults to the input operators (s, t, f) the search explores: c and l change
    weight shapes, so they have no fine-tuning to remove and their KD-from-scratch training is
    the search's own hypothesis. The runs are ledger entries of their own (kind ``ablation``)
    and never take part in selection.
    """

    iteration: int
    operators: list[str] | None = None

    def __post_init__(self) -> None:
        if self.iteration < 1:
            raise ConfigError(f"ablation.iteration must be >= 1, got {self.iteration}")
        if self.operators is None:
            return
        operators = list(parse_operators(self.operators))
        shaped = [op for op in operators if op not in INPUT_OPERATORS]
        if shaped:
            raise ConfigError(f"ablation.operators: {', '.join(shaped)} change weight shapes, so there is no "
                              "fine-tuning to ablate; choose from s, t, f (Table 4)")
        object.__setattr__(self, "operators", operators)


@dataclass(frozen=True)
class ShrinkConfig:
    """A whole PAS run (see the module docstring).

    ``cost_tolerance``: Eq. (3) (highest top-1) selects when the hypotheses' cost ratios
    C(h)/C(R_prev) agree (largest / smallest <= 1 + cost_tolerance), Eq. (1) otherwise.
    ``tie_tolerance`` (default 0.001, a tenth of a point, the precision the paper reports and
    ties at): hypotheses whose top-1 is within it of the best count as tied and are ordered by
    top-5, then by lower cost (section 4.3); under Eq. (1), those whose score with top-1 raised
    by it reaches the best score (see :mod:`effvid.methods.pas.search`). One validation video
    moves top-1 by 1/N, so on a set of fewer than 1000 videos only equal counts tie (1/240 =
    0.0042 on 240 videos), while on Kinetics-400's ~20k videos 0.001 spans ~20 videos.
    ``distill: false`` trains hypotheses with CE only and ``finetune: false`` starts every
    hypothesis from random weights, for the whole search; ``ablation`` (:class:`AblationConfig`)
    instead retrains one iteration without each of them, beside a full search (Table 4).
    ``distillation`` holds the KD settings (t, alpha, teacher BN mode, intermediate-feature
    terms: Tables 6 and 7); ``control: true`` trains each selected architecture from scratch
    with CE after the search (Table 2), with the ``control_train`` recipe (default: the
    hypotheses' ``train``, the same epochs, as in the paper; give the base's recipe for a
    full-length control). ``retries`` is how many times a failed hypothesis is tried again in
    one invocation. ``latency_repeats`` timed batch-1 CPU forwards with ``latency_threads``
    threads give each reported model's median latency (0: not measured).
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
    tie_tolerance: float = 0.001
    distill: bool = True
    distillation: DistillConfig = field(default_factory=DistillConfig)
    finetune: bool = True
    finetune_lr_scale: float = 0.1
    control: bool = False
    control_train: dict[str, Any] | None = None
    ablation: AblationConfig | None = None
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
        if not 0 <= self.tie_tolerance < 1:
            raise ConfigError(f"tie_tolerance must be in [0, 1) (a top-1 difference), got {self.tie_tolerance}")
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
        if self.ablation is not None:
            object.__setattr__(self, "ablation", self._checked_ablation(self.ablation))

    def _checked_ablation(self, ablation: AblationConfig) -> AblationConfig:
        """``ablation`` with its operators resolved, after checking it fits this search."""
        if not (self.distill and self.finetune):
            raise ConfigError("ablation: Table 4 removes KD or fine-tuning from the full PAS recipe; "
                              "it needs distill: true and finetune: true")
        if ablation.iteration > self.iterations:
            raise ConfigError(f"ablation.iteration={ablation.iteration}: the search runs only {self.iterations} "
                              "iteration(s); raise iterations or ablate an earlier one")
        explored = [op for op in INPUT_OPERATORS if op in self.operators]
        operators = ablation.operators if ablation.operators is not None else explored
        missing = [op for op in operators if op not in self.operators]
        if missing or not operators:
            raise ConfigError(f"ablation.operators: the search explores {','.join(self.operators)}; the ablation "
                              f"retrains input operators (s, t, f) among them, got {','.join(operators) or 'none'}")
        return replace(ablation, operators=operators)

    def gamma(self, operator: str) -> float:
        """The factor of ``operator`` (configured, else the paper's default)."""
        return float(self.gammas.get(operator, DEFAULT_GAMMAS[operator]))

    def result_settings(self) -> dict[str, Any]:
        """Every setting that decides this run's finished networks and selections, as ``{"dotted.key": value}``.

        All keys but :data:`RESUME_FREE_KEYS`, defaults filled in: each recipe as the whole
        TrainConfig it becomes, ``base.train`` (a base trained first) and ``control_train``
        as the recipe they stand for when unset, and the factor of every explored operator.
        Two configs with equal settings give the same networks.
        """
        data = {key: value for key, value in to_dict(self).items() if key not in RESUME_FREE_KEYS}
        data["gammas"] = {op: self.gamma(op) for op in self.operators}
        data["train"] = _resolved_recipe(self.train, "train")
        data["control_train"] = _resolved_recipe(self.control_train if self.control_train is not None else self.train,
                                                 "control_train")
        if self.base.model is not None:
            data["base"]["train"] = _resolved_recipe(self.base.train if self.base.train is not None else self.train,
                                                     "base.train")
        return flatten(data)

    def train_config(self, run_dir: str | Path, *, spec: ArchSpec | None = None, model: ModelConfig | None = None,
                     teacher: str | None = None, init_from: str | None = None, recipe: dict[str, Any] | None = None
                     ) -> TrainConfig:
        """The TrainConfig of one training in ``run_dir``: the recipe plus the model, data and KD/init settings.

        ``recipe`` defaults to the hypotheses' ``train``. ``teacher`` adds the configured
        distillation from that checkpoint; ``init_from`` starts from those weights with the
        learning rate times ``finetune_lr_scale``.
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

    def control_config(self, run_dir: str | Path, spec: ArchSpec) -> TrainConfig:
        """The without-PAS control of ``spec`` (Table 2): CE only, random weights, the full learning
        rate, and the ``control_train`` recipe, which defaults to the hypotheses' ``train`` (the
        same epochs and schedule)."""
        return self.train_config(run_dir, spec=spec, recipe=self.control_train)


def _recipe_config(recipe: dict[str, Any], key: str) -> TrainConfig:
    """``recipe`` validated as a TrainConfig (placeholders for the keys PAS sets)."""
    probe = {**recipe, "run_dir": ".", "model": {"name": "probe"}, "data": {"train": "probe"}}
    return from_dict(TrainConfig, probe, source=f"config key {key!r}")


def _resolved_recipe(recipe: dict[str, Any], key: str) -> dict[str, Any]:
    """``recipe`` with every TrainConfig default filled in, without the keys PAS sets."""
    return {k: v for k, v in to_dict(_recipe_config(recipe, key)).items() if k not in RECIPE_RESERVED}


def _check_recipe(recipe: dict[str, Any], key: str) -> None:
    reserved = sorted(set(recipe) & set(RECIPE_RESERVED))
    if reserved:
        raise ConfigError(f"{key}: PAS sets {', '.join(reserved)} for every hypothesis; remove them from the recipe")
    _recipe_config(recipe, key)


def load_shrink_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ShrinkConfig:
    """Read a PAS YAML with ``key=value`` overrides into a validated :class:`ShrinkConfig`."""
    return load_config(path, ShrinkConfig, overrides)
