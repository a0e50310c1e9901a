"""Training criteria: classification, PAS knowledge distillation, feature distillation, and the
:class:`LossComposer` that sums named, weighted, scheduled loss terms.

A loss term is any callable ``fn(ctx: LossContext) -> Tensor`` (a scalar). The trainer builds
one :class:`LossContext` per step (student logits, targets, inputs, the model's per-sample
cost and decisions, epoch) and calls the composer, which returns the weighted total and every
active term's unweighted value for logging. Dynamic methods add their efficiency terms the
same way. A term may be an ``nn.Module`` with trainable parameters (feature distillation's
connectors, a method's auxiliary heads): :class:`TrainStep` holds the model and those modules
as one module, so DDP averages their gradients with the model's and checkpoints keep them.

Distillation (PAS, section 3.3, Eq. 7): ``L = CE + alpha * t^2 * KL(teacher || student)``
with both distributions softened at temperature ``t`` (defaults ``t = 5``, ``alpha = 500``).
In the composer the ``"kd"`` term's value is ``t^2 * KL`` and its weight is ``alpha``.

Why ``alpha = 500`` implies KL averaged over batch *and classes* (``reduction="mean"``, the
default of PyTorch's ``nn.KLDivLoss``) rather than summed over classes (``"batchmean"``):
``alpha * t^2 = 12500``. With ``batchmean`` the KD term would be 12500 times the per-sample
KL; at ``t = 5`` that KL is of order 1e-2..1e-1 for an untrained student, so the KD term
would outweigh the cross-entropy (about ``ln 400 = 6`` at the start on Kinetics-400) by
two to three orders of magnitude and, at the paper's learning rate 0.96, blow up SGD.
Averaging over the K = 400 classes as well divides by 400: the per-sample KL then carries
weight ``12500 / 400 = 31.25 = 1.25 t^2``, i.e. Hinton et al.'s recipe with the soft term
weighted 1.25 against the hard term, the usual regime. So ``"mean"`` is the default;
``"batchmean"`` (the mathematically proper KL) is an option. Note the effective weight
scales as ``1 / K``: to keep Kinetics' balance on a K-class dataset use ``alpha ~ 1.25 K``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from effvid.engine.checkpoint import load_model
from effvid.engine.schedules import WeightScheduleKind, scheduled_weight
from effvid.errors import ConfigError
from effvid.models.base import model_output

KLReduction = Literal["mean", "batchmean"]
BNMode = Literal["train", "eval"]
FeatureKind = Literal["none", "mse", "margin_relu"]


@dataclass(frozen=True)
class LossTermConfig:
    """A named loss term's weight and its per-epoch schedule (see :func:`scheduled_weight`)."""

    name: str
    weight: float = 1.0
    schedule: WeightScheduleKind = "constant"
    final_weight: float | None = None
    start_epoch: float = 0.0
    ramp_epochs: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        try:
            self.weight_at(0.0)
        except ConfigError as exc:
            raise ConfigError(f"loss term {self.name!r}: {exc}") from None

    def weight_at(self, epoch: float) -> float:
        """The term's weight at fractional ``epoch``."""
        return scheduled_weight(self.schedule, self.weight, epoch, final_weight=self.final_weight,
                                start_epoch=self.start_epoch, ramp_epochs=self.ramp_epochs, rate=self.rate)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a frozen teacher checkpoint (PAS section 3.3, Tables 6-7).

    ``teacher`` is a checkpoint path (``None``: no distillation). ``feature`` adds an
    intermediate-feature term after every residual stage, weighted by ``feature_weight``.
    """

    teacher: str | None = None
    temperature: float = 5.0
    alpha: float = 500.0
    teacher_bn: BNMode = "train"
    kl_reduction: KLReduction = "mean"
    feature: FeatureKind = "none"
    feature_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature must be positive, got {self.temperature}")
        if self.alpha < 0 or self.feature_weight < 0:
            raise ConfigError("distill.alpha and distill.feature_weight must be >= 0")


# ---------------------------------------------------------------------------------------------
# Plain criteria


def classification_loss(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy for class-index targets ``(B,)``; BCE-with-logits for multi-hot float targets ``(B, K)``.

    ``label_smoothing`` applies to the single-label case only.
    """
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"multi-label targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def kd_kl_divergence(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float = 5.0,
                     reduction: KLReduction = "mean") -> Tensor:
    """``KL(softmax(teacher / t) || softmax(student / t))`` (PAS Eq. 5), not yet scaled by ``t^2``.

    ``"mean"`` averages the per-class terms over batch and classes (what PyTorch 2.x's
    ``F.kl_div(reduction="mean")`` computes); ``"batchmean"`` sums over classes and averages
    over the batch (see the module docstring for which one PAS means).
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    divisor = student_logits.shape[-1] if reduction == "mean" else 1
    return per_sample.mean() / divisor


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor, *, temperature: float = 5.0,
                      alpha: float = 500.0, reduction: KLReduction = "mean", label_smoothing: float = 0.0) -> Tensor:
    """PAS Eq. 7: ``CE(student, targets) + alpha * t^2 * KL(teacher || student)``."""
    kl = kd_kl_divergence(student_logits, teacher_logits, temperature=temperature, reduction=reduction)
    ce = classification_loss(student_logits, targets, label_smoothing=label_smoothing)
    return ce + alpha * temperature**2 * kl


# ---------------------------------------------------------------------------------------------
# The frozen teacher


class FrozenTeacher:
    """A teacher network whose weights and BN statistics never change.

    Its parameters have ``requires_grad=False`` and every forward runs under
    ``torch.no_grad()``. ``bn_mode="train"`` (the PAS default, Table 7) normalises with the
    current batch's statistics, like the student, but never writes them back: each BN layer
    runs with ``track_running_stats=False``, so running means, variances and batch counters
    stay exactly as loaded. ``bn_mode="eval"`` uses the stored running statistics. Dropout
    and every other layer are always in eval mode. Not an ``nn.Module`` on purpose: it is
    never part of the student's parameters, optimizer, ``train()`` calls or checkpoints.
    """

    def __init__(self, model: nn.Module, bn_mode: BNMode = "train") -> None:
        if bn_mode not in ("train", "eval"):
            raise ConfigError(f"teacher BN mode must be 'train' or 'eval', got {bn_mode!r}")
        self.model = model.requires_grad_(False)
        self.bn_mode = bn_mode
        self._bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self._set_modes()

    @classmethod
    def from_checkpoint(cls, path: str | Path, bn_mode: BNMode = "train",
                        map_location: str | torch.device = "cpu") -> FrozenTeacher:
        """A teacher built from an effvid checkpoint (read only; the file is never rewritten)."""

        return cls(load_model(path, map_location=map_location), bn_mode)

    def _set_modes(self) -> None:
        self.model.eval()
        for bn in self._bns:
            bn.train(self.bn_mode == "train")
            bn.track_running_stats = self.bn_mode == "eval"

    def to(self, device: str | torch.device) -> FrozenTeacher:
        """Move the teacher to ``device``; returns ``self``."""
        self.model.to(device)
        return self

    def __call__(self, inputs: Any) -> Tensor:
        """The teacher's logits for ``inputs`` (no gradient, no state change)."""
        self._set_modes()
        with torch.no_grad():
            return self.model(inputs)


# ---------------------------------------------------------------------------------------------
# Composable loss terms


@dataclass
class LossContext:
    """Everything a loss term may read for one training step.

    ``cost`` is a dynamic model's per-sample cost in GMACs (``None`` for a static network) and
    ``decisions`` its named decisions, both from :class:`~effvid.models.base.ModelOutput`, for
    efficiency terms; ``teacher_inputs`` defaults to ``inputs``; ``cache`` is shared by the
    terms of one step (the teacher runs once however many terms use it).
    """

    logits: Tensor
    targets: Tensor
    inputs: Any = None
    teacher_inputs: Any = None
    cost: Tensor | None = None
    decisions: Mapping[str, Tensor] = field(default_factory=dict)
    epoch: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)


LossFn = Callable[[LossContext], Tensor]


def teacher_logits(ctx: LossContext, teacher: FrozenTeacher) -> Tensor:
    """The teacher's logits for this step's inputs, computed at most once per context."""
    if "teacher_logits" not in ctx.cache:
        inputs = ctx.teacher_inputs if ctx.teacher_inputs is not None else ctx.inputs
        if inputs is None:
            raise ValueError("distillation needs LossContext.inputs (or teacher_inputs)")
        ctx.cache["teacher_logits"] = teacher(inputs)
    return ctx.cache["teacher_logits"]


def classification_term(*, label_smoothing: float = 0.0) -> LossFn:
    """The loss term for :func:`classification_loss` of the student logits."""

    def term(ctx: LossContext) -> Tensor:
        return classification_loss(ctx.logits, ctx.targets, label_smoothing=label_smoothing)

    return term


def kd_term(teacher: FrozenTeacher, *, temperature: float = 5.0, reduction: KLReduction = "mean") -> LossFn:
    """The loss term ``t^2 * KL(teacher || student)``; give it weight ``alpha`` for PAS Eq. 7."""

    def term(ctx: LossContext) -> Tensor:
        kl = kd_kl_divergence(ctx.logits, teacher_logits(ctx, teacher), temperature=temperature, reduction=reduction)
        return temperature**2 * kl

    return term


@dataclass
class _Term:
    fn: LossFn
    weight: Callable[[float], float]


class LossComposer:
    """A weighted sum of named loss terms, each with an optional per-epoch weight schedule.

    ``composer(ctx)`` returns ``(total, values)``: ``total`` is the differentiable sum of
    ``weight(epoch) * term(ctx)`` over the active terms; ``values`` maps ``"loss"`` and each
    active term's name to its detached, unweighted value. :meth:`activate` restricts the
    active terms (a training stage's ``losses`` list).
    """

    def __init__(self) -> None:
        self._terms: dict[str, _Term] = {}
        self._active: list[str] | None = None

    def add(self, name: str, fn: LossFn, *, weight: float | Callable[[float], float] = 1.0) -> None:
        """Register ``fn`` under ``name`` with a constant weight or a ``weight(epoch)`` function."""
        if name in self._terms:
            raise ConfigError(f"loss term {name!r} is defined twice")
        if name == "loss":
            raise ConfigError("'loss' is reserved for the total; choose another term name")
        schedule = weight if callable(weight) else (lambda epoch, w=float(weight): w)
        self._terms[name] = _Term(fn, schedule)

    def add_config(self, cfg: LossTermConfig, fn: LossFn) -> None:
        """Register ``fn`` with the name, weight and schedule of ``cfg``."""
        self.add(cfg.name, fn, weight=cfg.weight_at)

    @property
    def names(self) -> list[str]:
        """Every registered term, in registration order."""
        return list(self._terms)

    @property
    def active(self) -> list[str]:
        """The terms that count now."""
        return list(self._terms) if self._active is None else list(self._active)

    def activate(self, names: Iterable[str] | None) -> None:
        """Make only ``names`` active (``None``: all); an unknown name is a :class:`ConfigError`."""
        if names is None:
            self._active = None
            return
        names = list(names)
        unknown = [n for n in names if n not in self._terms]
        if unknown:
            raise ConfigError(f"unknown loss term(s) {', '.join(map(repr, unknown))}; defined: {', '.join(self._terms)}")
        self._active = names

    def modules(self) -> nn.ModuleDict:
        """The terms that are ``nn.Module`` (they may own trainable parameters), by name."""
        return nn.ModuleDict({name: term.fn for name, term in self._terms.items() if isinstance(term.fn, nn.Module)})

    def close(self) -> None:
        """Release what terms hold outside themselves (hooks on the models): each term's ``close()``."""
        for term in self._terms.values():
            close = getattr(term.fn, "close", None)
            if callable(close):
                close()

    def weights(self, epoch: float) -> dict[str, float]:
        """Each active term's weight at ``epoch``."""
        return {name: self._terms[name].weight(epoch) for name in self.active}

    def __call__(self, ctx: LossContext) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        values: dict[str, Tensor] = {}
        for name in self.active:
            term = self._terms[name]
            value = term.fn(ctx)
            values[name] = value.detach()
            weighted = term.weight(ctx.epoch) * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ConfigError("no loss term is active")
        values["loss"] = total.detach()
        return total, values


# ---------------------------------------------------------------------------------------------
# Intermediate-feature distillation


def margins_from_bn(bn: _BatchNorm) -> Tensor:
    """Heo et al.'s per-channel margin: ``E[x | x < 0]`` for ``x ~ N(beta, gamma^2)`` of a BN's output.

    Channels whose negative mass is below 0.1% get ``-3 |gamma|``.
    """
    if bn.weight is None or bn.bias is None:
        raise ConfigError("margin-ReLU distillation needs affine BatchNorm layers in the teacher")
    std = bn.weight.detach().float().abs().clamp_min(1e-6)
    mean = bn.bias.detach().float()
    z = mean / std
    neg_mass = 0.5 * (1.0 + torch.erf(-z / math.sqrt(2.0)))
    density = torch.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    expected = mean - std * density / neg_mass.clamp_min(1e-12)
    return torch.where(neg_mass > 1e-3, expected, -3.0 * std)


def margin_relu_partial_l2(student: Tensor, target: Tensor) -> Tensor:
    """Heo et al.'s partial L2, averaged over elements: positions where ``student <= target <= 0`` add nothing."""
    mask = (student > target) | (target > 0)
    return ((student - target) ** 2 * mask).mean()


def _stage_modules(model: nn.Module) -> list[nn.Module]:
    names = getattr(model, "stage_names", None)
    if not names:
        raise ConfigError(f"feature distillation needs the model ({type(model).__name__}) to name its stages in 'stage_names'")
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(f"{type(model).__name__}.stage_names lists unknown module(s): {', '.join(missing)}")
    return [modules[n] for n in names]


def _stage_bn(stage: nn.Module, channels: int) -> _BatchNorm:
    """The BN normalising a stage's output: the last one with ``channels`` features in its last block."""
    children = list(stage.children())
    for scope in ([children[-1]] if children else []) + [stage]:
        bns = [m for m in scope.modules() if isinstance(m, _BatchNorm) and m.num_features == channels]
        if bns:
            return bns[-1]
    raise ConfigError(f"margin-ReLU distillation found no BatchNorm with {channels} channels in stage {type(stage).__name__}")


def _probe_input(model: nn.Module) -> Tensor:
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError(f"{type(model).__name__} has no 'spec'; pass an example input for feature distillation")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(1, 3, spec.num_frames, spec.crop_size, spec.crop_size, device=device)


def _as_tensors(module: nn.Module, output: Any) -> list[Tensor]:
    """A stage output as a list of feature maps (SlowFast stages return ``[slow, fast]``)."""
    items = list(output) if isinstance(output, (list, tuple)) else [output]
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise ConfigError(f"feature distillation needs tensor stage outputs; {type(module).__name__} "
                          f"returned {type(output).__name__}")
    return items


def _stage_shapes(model: nn.Module, stages: Sequence[nn.Module], example: Tensor) -> list[list[torch.Size]]:
    """Each stage's output shapes (one per pathway) for one forward of ``example`` in eval mode."""
    shapes: list[list[torch.Size]] = []
    handles = [s.register_forward_hook(lambda m, _i, out: shapes.append([t.shape for t in _as_tensors(m, out)]))
               for s in stages]
    was_training = [m.training for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        for m, flag in zip(model.modules(), was_training):
            m.training = flag
    return shapes


def _resize_like(target: Tensor, like: Tensor) -> Tensor:
    size = like.shape[2:]
    if target.shape[2:] == size:
        return target
    if all(t >= s for t, s in zip(target.shape[2:], size)):
        pool = F.adaptive_avg_pool3d if target.dim() == 5 else F.adaptive_avg_pool2d
        return pool(target, size)
    return F.interpolate(target, size=size, mode="trilinear" if target.dim() == 5 else "bilinear", align_corners=False)


def _unfold_frames(features: Tensor, ctx: LossContext) -> Tensor:
    """Folded frame-model features ``(B*T, C, h, w)`` as ``(B, C, T, h, w)``, so differing T can be resized."""
    batch = ctx.logits.shape[0]
    return features.view(batch, -1, *features.shape[1:]).transpose(1, 2)


class FeatureDistillation(nn.Module):
    """Intermediate-feature distillation after each stage named by the models' ``stage_names``.

    Forward hooks record the student's and the teacher's stage outputs (each pathway of a
    SlowFast stage is its own feature map). ``kind="mse"``: mean squared error between the
    student's features (through a 1x1(x1) conv projection when the channel counts differ,
    otherwise unchanged) and the teacher's. ``kind="margin_relu"`` (Heo et al., ICCV 2019):
    the teacher's features pass through a margin ReLU ``max(x, m_c)`` with per-channel
    margins from the teacher BN that normalises the stage output (:func:`margins_from_bn`);
    the student's pass through a 1x1(x1) conv + BN connector; the loss is the partial L2
    :func:`margin_relu_partial_l2`. Targets are resized to the student's ``(T, H, W)`` when
    input-reducing operators made them differ (folded 2D frame-model features are unfolded
    to ``(B, C, T, h, w)`` first when the frame counts differ). The term averages over feature maps. It is
    called as a loss term (``module(ctx)``).

    The connectors are trainable: the trainer's :class:`TrainStep` holds this module with the
    student, so they are optimised, averaged across DDP ranks and checkpointed with it. Student
    features are recorded only while the student is in train mode. Stage outputs of effvid
    ResNets are post-ReLU (non-negative), where the margin changes nothing and the term is
    the partial L2 alone.
    """

    def __init__(self, student: nn.Module, teacher: FrozenTeacher, *, kind: Literal["mse", "margin_relu"],
                 student_example: Tensor | None = None, teacher_example: Tensor | None = None) -> None:
        super().__init__()
        if kind not in ("mse", "margin_relu"):
            raise ConfigError(f"feature distillation kind must be 'mse' or 'margin_relu', got {kind!r}")
        self.kind = kind
        self.teacher = teacher
        student_stages = _stage_modules(student)
        teacher_stages = _stage_modules(teacher.model)
        s_shapes = _stage_shapes(student, student_stages,
                                 student_example if student_example is not None else _probe_input(student))
        t_shapes = _stage_shapes(teacher.model, teacher_stages,
                                 teacher_example if teacher_example is not None else _probe_input(teacher.model))
        if [len(s) for s in s_shapes] != [len(t) for t in t_shapes]:
            raise ConfigError(f"student stages {[len(s) for s in s_shapes]} and teacher stages "
                              f"{[len(t) for t in t_shapes]} (feature maps per stage) cannot be paired")
        connectors, device = [], next(teacher.model.parameters()).device
        for stage, s_stage, t_stage in zip(teacher_stages, s_shapes, t_shapes):
            for s, t in zip(s_stage, t_stage):
                same = kind == "mse" and s[1] == t[1]
                connectors.append(nn.Identity() if same else _connector(s[1], t[1], len(s), with_bn=kind == "margin_relu"))
                margin = margins_from_bn(_stage_bn(stage, t[1])) if kind == "margin_relu" else torch.zeros(0)
                self.register_buffer(f"margin{len(connectors) - 1}", margin.to(device))
        self.connectors = nn.ModuleList(connectors)
        self._student_feats: list[list[Tensor] | None] = [None] * len(student_stages)
        self._teacher_feats: list[list[Tensor] | None] = [None] * len(teacher_stages)
        self._handles = [s.register_forward_hook(self._recorder(self._student_feats, i, student_only=True))
                         for i, s in enumerate(student_stages)]
        self._handles += [s.register_forward_hook(self._recorder(self._teacher_feats, i, student_only=False))
                          for i, s in enumerate(teacher_stages)]

    @staticmethod
    def _recorder(store: list[list[Tensor] | None], index: int, *, student_only: bool) -> Callable[..., None]:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if not student_only or module.training:
                store[index] = _as_tensors(module, output)

        return hook

    def forward(self, ctx: LossContext) -> Tensor:
        teacher_logits(ctx, self.teacher)
        if any(f is None for f in self._student_feats) or any(f is None for f in self._teacher_feats):
            raise RuntimeError("stage features were not recorded: run the student in train mode before the loss")
        students = [t for stage in self._student_feats for t in stage]
        targets = [t for stage in self._teacher_feats for t in stage]
        losses = []
        for i, (connector, student, target) in enumerate(zip(self.connectors, students, targets)):
            student = connector(student.float())
            target = target.detach().float()
            if self.kind == "margin_relu":
                margin = getattr(self, f"margin{i}").view(1, -1, *([1] * (target.dim() - 2)))
                target = torch.maximum(target, margin)
            if student.dim() == 4 and student.shape[0] != target.shape[0]:
                student, target = _unfold_frames(student, ctx), _unfold_frames(target, ctx)
            target = _resize_like(target, student)
            losses.append(F.mse_loss(student, target) if self.kind == "mse" else margin_relu_partial_l2(student, target))
        self._student_feats[:] = [None] * len(self._student_feats)
        self._teacher_feats[:] = [None] * len(self._teacher_feats)
        return torch.stack(losses).mean()

    def close(self) -> None:
        """Detach the hooks from student and teacher."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _connector(student_ch: int, teacher_ch: int, dim: int, *, with_bn: bool) -> nn.Sequential:
    """1x1(x1) conv (then BN for margin-ReLU) mapping student channels onto the teacher's."""
    layers: list[nn.Module] = [(nn.Conv3d if dim == 5 else nn.Conv2d)(student_ch, teacher_ch, 1, bias=False)]
    if with_bn:
        layers.append((nn.BatchNorm3d if dim == 5 else nn.BatchNorm2d)(teacher_ch))
    return nn.Sequential(*layers)


def add_distillation_terms(composer: LossComposer, cfg: DistillConfig, teacher: FrozenTeacher,
                           student: nn.Module) -> FeatureDistillation | None:
    """Register PAS's ``"kd"`` term (weight ``alpha``) and, if ``cfg.feature`` asks, a ``"feature"`` term.

    Returns the :class:`FeatureDistillation` module whose connector parameters the optimizer
    must also train, or ``None``.
    """
    composer.add("kd", kd_term(teacher, temperature=cfg.temperature, reduction=cfg.kl_reduction), weight=cfg.alpha)
    if cfg.feature == "none":
        return None
    features = FeatureDistillation(student, teacher, kind=cfg.feature)
    composer.add("feature", features, weight=cfg.feature_weight)
    return features


class TrainStep(nn.Module):
    """One training step's forward as a module: the model, then the composed loss.

    ``forward(clip, targets, epoch)`` runs the model through its contract
    (:func:`~effvid.models.base.model_output`), builds the :class:`LossContext` and returns the
    composer's ``(total, values)``. The composer's module terms are registered under
    ``losses``, so wrapping a ``TrainStep`` in DDP averages their gradients with the model's.
    """

    def __init__(self, model: nn.Module, composer: LossComposer) -> None:
        super().__init__()
        self.model = model
        self.losses = composer.modules()
        self.composer = composer

    def forward(self, clip: Any, targets: Tensor, epoch: float) -> tuple[Tensor, dict[str, Tensor]]:
        output = model_output(self.model, clip)
        ctx = LossContext(logits=output.logits, targets=targets, inputs=clip, cost=output.cost,
                          decisions=output.decisions, epoch=epoch)
        return self.composer(ctx)
