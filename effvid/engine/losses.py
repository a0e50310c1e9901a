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
with both distributions softened at temperature ``t`` (PAS: ``t = 5``, ``alpha = 500`` on
Kinetics-400). In the composer the ``"kd"`` term's value is ``t^2 * KL`` and its weight is ``alpha``.

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

``alpha: auto`` (the default, :func:`resolve_alpha`) applies that rule from the student's class
count K when the ``"kd"`` term is built: ``alpha = 1.25 K`` with ``"mean"`` (500 on
Kinetics-400, 20 on SynthActions' 16 classes) and ``alpha = 1.25`` with ``"batchmean"``, the same
per-sample weight ``1.25 t^2`` on the KL either way. A number is used as given (the paper's 500
on a 16-class dataset makes the KD term about 25 times heavier than that balance).
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
from effvid.models.layers import PreActivationBlock

KLReduction = Literal["mean", "batchmean"]
BNMode = Literal["train", "eval"]
FeatureKind = Literal["none", "mse", "margin_relu"]
TeacherInput = Literal["student", "base"]


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
    ``alpha`` is the ``"kd"`` term's weight: a number (PAS: 500), or ``"auto"`` (the default),
    resolved by :func:`resolve_alpha` from the student's class count (module docstring).
    ``teacher_input`` is what the teacher sees: ``"student"`` the student's own clip;
    ``"base"`` the same moment and region at the teacher checkpoint's own geometry (its frames,
    stride, crop size, mean and std; :mod:`effvid.data.dataset`), so a student whose input was
    reduced is distilled from what the teacher makes of the full input.
    """

    teacher: str | None = None
    temperature: float = 5.0
    alpha: float | Literal["auto"] = "auto"
    teacher_bn: BNMode = "train"
    kl_reduction: KLReduction = "mean"
    feature: FeatureKind = "none"
    feature_weight: float = 1.0
    teacher_input: TeacherInput = "student"

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"distill.temperature must be positive, got {self.temperature}")
        if self.teacher_input not in ("student", "base"):
            raise ConfigError(f"distill.teacher_input must be 'student' or 'base', got {self.teacher_input!r}")
        if isinstance(self.alpha, str) and self.alpha != "auto":
            raise ConfigError(f"distill.alpha must be a number or 'auto', got {self.alpha!r}")
        if (self.alpha != "auto" and self.alpha < 0) or self.feature_weight < 0:
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


KD_SOFT_WEIGHT = 1.25
"""The per-sample ``t^2 * KL`` weight against the CE that PAS's ``alpha = 500`` gives on Kinetics-400."""


def resolve_alpha(alpha: float | Literal["auto"], *, num_classes: int | None,
                  reduction: KLReduction = "mean") -> float:
    """The ``"kd"`` term's weight for ``distill.alpha`` (module docstring).

    A number is returned as is. ``"auto"`` gives ``1.25 * num_classes`` with ``reduction="mean"``
    (500 for 400 classes) and ``1.25`` with ``"batchmean"``: the per-sample KL is weighted
    ``1.25 t^2`` whatever the class count and the reduction. ``"auto"`` with ``"mean"`` and an
    unknown class count (``None``) is a :class:`ConfigError`.
    """
    if alpha != "auto":
        return float(alpha)
    if reduction == "batchmean":
        return KD_SOFT_WEIGHT
    if num_classes is None:
        raise ConfigError("distill.alpha 'auto' needs the student's class count (spec.num_classes); "
                          "set distill.alpha to a number")
    return KD_SOFT_WEIGHT * num_classes


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


def preactivation_blocks(stage: nn.Module) -> list[PreActivationBlock]:
    """The last :class:`~effvid.models.layers.PreActivationBlock` of each block sequence in ``stage``.

    One per pathway, in module order (a SlowFast stage gives ``[slow, fast]``, a plain ResNet
    stage its last block); empty when the stage holds no such block.
    """
    last: dict[str, PreActivationBlock] = {}
    for name, module in stage.named_modules():
        if isinstance(module, PreActivationBlock):
            last[name.rpartition(".")[0]] = module
    return list(last.values())


@dataclass(frozen=True)
class FeatureTap:
    """One place where a stage's features are recorded: the forward output of :attr:`module`.

    With ``block`` set, that is ``block.preact``, the block's pre-ReLU residual sum (one map);
    otherwise the stage itself, its output (a map, or a SlowFast stage's ``[slow, fast]``).
    """

    stage: nn.Module
    block: PreActivationBlock | None = None

    @property
    def module(self) -> nn.Module:
        """The module whose forward hook records the features."""
        return self.stage if self.block is None else self.block.preact

    def margin_bn(self, channels: int) -> _BatchNorm:
        """The BN whose ``beta``, ``gamma`` give the margins of this tap's ``channels``-channel map:
        the block's residual-branch BN (Heo et al.'s "BN before the ReLU"), or for a stage output
        the stage's last BN of that width (:func:`_stage_bn`)."""
        if self.block is None:
            return _stage_bn(self.stage, channels)
        bn = self.block.residual_norm()
        if not isinstance(bn, _BatchNorm) or bn.num_features != channels:
            raise ConfigError(f"margin-ReLU distillation: {type(self.block).__name__}.residual_norm() is not a "
                              f"BatchNorm of its {channels} output channels")
        return bn


def feature_taps(model: nn.Module, kind: Literal["mse", "margin_relu"]) -> list[list[FeatureTap]]:
    """Per stage of ``model.stage_names``, where :class:`FeatureDistillation` records its features.

    ``"margin_relu"``: the pre-ReLU sum of each pathway's last residual block
    (:func:`preactivation_blocks`); a stage without such blocks is recorded at its output
    (MobileNetV2 and EfficientNet, whose linear bottlenecks end in a BN, Inception, and D-STEP's
    gated blocks, which do not expose ``preact``). ``"mse"``: every stage's output.
    """
    taps = []
    for stage in _stage_modules(model):
        blocks = preactivation_blocks(stage) if kind == "margin_relu" else []
        taps.append([FeatureTap(stage, block) for block in blocks] or [FeatureTap(stage)])
    return taps


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


def _tap_shapes(model: nn.Module, taps: Sequence[FeatureTap], example: Tensor) -> list[list[torch.Size]]:
    """Each tap's feature-map shapes (one per pathway) for one forward of ``example`` in eval mode."""
    shapes: list[list[torch.Size]] = [[] for _ in taps]

    def recorder(index: int) -> Callable[..., None]:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            shapes[index] = [t.shape for t in _as_tensors(module, output)]

        return hook

    handles = [tap.module.register_forward_hook(recorder(i)) for i, tap in enumerate(taps)]
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
    """Intermediate-feature distillation at each stage named by the models' ``stage_names``.

    Forward hooks record the student's and the teacher's features where :func:`feature_taps`
    says (each pathway of a SlowFast stage is its own feature map). ``kind="mse"``: at the
    stage outputs, mean squared error between the student's features (through a 1x1(x1) conv
    projection when the channel counts differ, otherwise unchanged) and the teacher's.
    ``kind="margin_relu"`` (Heo et al., ICCV 2019): at the end of each stage *before* its final
    ReLU -- the pre-ReLU residual sum of each pathway's last block, which keeps the negative
    responses the ReLU would erase. The teacher's feature passes through the margin ReLU
    ``max(x, m_c)`` with per-channel margins from the BN that ends that block's residual branch
    (:func:`margins_from_bn`: ``E[x | x < 0]`` of ``N(beta, gamma^2)``, Heo et al.'s choice of
    the BN before the ReLU); the student's through a 1x1(x1) conv + BN connector; the loss is the
    partial L2 :func:`margin_relu_partial_l2`, which skips positions where the student is below a
    non-positive target. Targets are resized to the student's ``(T, H, W)`` when
    input-reducing operators made them differ (folded 2D frame-model features are unfolded
    to ``(B, C, T, h, w)`` first when the frame counts differ). The term averages over feature
    maps. It is called as a loss term (``module(ctx)``).

    The connectors are trainable: the trainer's :class:`TrainStep` holds this module with the
    student, so they are optimised, averaged across DDP ranks and checkpointed with it. Student
    features are recorded only while the student is in train mode. Recording changes neither
    model's outputs: pre-ReLU features are cloned before the block's in-place ReLU.
    """

    def __init__(self, student: nn.Module, teacher: FrozenTeacher, *, kind: Literal["mse", "margin_relu"],
                 student_example: Tensor | None = None, teacher_example: Tensor | None = None) -> None:
        super().__init__()
        if kind not in ("mse", "margin_relu"):
            raise ConfigError(f"feature distillation kind must be 'mse' or 'margin_relu', got {kind!r}")
        self.kind = kind
        self.teacher = teacher
        student_by_stage, teacher_by_stage = feature_taps(student, kind), feature_taps(teacher.model, kind)
        student_taps = [tap for stage in student_by_stage for tap in stage]
        teacher_taps = [tap for stage in teacher_by_stage for tap in stage]
        s_shapes = _tap_shapes(student, student_taps,
                               student_example if student_example is not None else _probe_input(student))
        t_shapes = _tap_shapes(teacher.model, teacher_taps,
                               teacher_example if teacher_example is not None else _probe_input(teacher.model))
        s_counts, t_counts = _maps_per_stage(student_by_stage, s_shapes), _maps_per_stage(teacher_by_stage, t_shapes)
        if s_counts != t_counts:
            raise ConfigError(f"student stages {s_counts} and teacher stages {t_counts} (feature maps per stage) "
                              "cannot be paired")
        student_maps = [shape for shapes in s_shapes for shape in shapes]
        teacher_maps = [(tap, shape) for tap, shapes in zip(teacher_taps, t_shapes) for shape in shapes]
        connectors, device = [], next(teacher.model.parameters()).device
        for s, (tap, t) in zip(student_maps, teacher_maps):
            same = kind == "mse" and s[1] == t[1]
            connectors.append(nn.Identity() if same else _connector(s[1], t[1], len(s), with_bn=kind == "margin_relu"))
            margin = margins_from_bn(tap.margin_bn(t[1])) if kind == "margin_relu" else torch.zeros(0)
            self.register_buffer(f"margin{len(connectors) - 1}", margin.to(device))
        self.connectors = nn.ModuleList(connectors)
        self._student_feats: list[list[Tensor] | None] = [None] * len(student_taps)
        self._teacher_feats: list[list[Tensor] | None] = [None] * len(teacher_taps)
        self._handles = [tap.module.register_forward_hook(self._recorder(self._student_feats, i, tap, student_only=True))
                         for i, tap in enumerate(student_taps)]
        self._handles += [tap.module.register_forward_hook(self._recorder(self._teacher_feats, i, tap,
                                                                          student_only=False))
                          for i, tap in enumerate(teacher_taps)]

    @staticmethod
    def _recorder(store: list[list[Tensor] | None], index: int, tap: FeatureTap, *,
                  student_only: bool) -> Callable[..., None]:
        """A forward hook storing ``tap``'s feature maps in ``store[index]`` (for a student only
        in train mode); pre-ReLU maps are cloned, since the block's ReLU then runs in place."""
        clone = tap.block is not None

        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            if not student_only or module.training:
                store[index] = [t.clone() if clone else t for t in _as_tensors(module, output)]

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


def _maps_per_stage(by_stage: Sequence[Sequence[FeatureTap]], shapes: Sequence[Sequence[torch.Size]]) -> list[int]:
    """How many feature maps each stage records, given every tap's shapes in stage order."""
    counts, start = [], 0
    for taps in by_stage:
        counts.append(sum(len(s) for s in shapes[start:start + len(taps)]))
        start += len(taps)
    return counts


def _connector(student_ch: int, teacher_ch: int, dim: int, *, with_bn: bool) -> nn.Sequential:
    """1x1(x1) conv (then BN for margin-ReLU) mapping student channels onto the teacher's."""
    layers: list[nn.Module] = [(nn.Conv3d if dim == 5 else nn.Conv2d)(student_ch, teacher_ch, 1, bias=False)]
    if with_bn:
        layers.append((nn.BatchNorm3d if dim == 5 else nn.BatchNorm2d)(teacher_ch))
    return nn.Sequential(*layers)


def add_distillation_terms(composer: LossComposer, cfg: DistillConfig, teacher: FrozenTeacher,
                           student: nn.Module) -> FeatureDistillation | None:
    """Register PAS's ``"kd"`` term and, if ``cfg.feature`` asks, a ``"feature"`` term.

    The ``"kd"`` weight is ``cfg.alpha`` resolved (:func:`resolve_alpha`) from the student's
    ``spec.num_classes``. Returns the :class:`FeatureDistillation` module whose connector
    parameters the optimizer must also train, or ``None``.
    """
    spec = getattr(student, "spec", None)
    alpha = resolve_alpha(cfg.alpha, num_classes=None if spec is None else spec.num_classes,
                          reduction=cfg.kl_reduction)
    composer.add("kd", kd_term(teacher, temperature=cfg.temperature, reduction=cfg.kl_reduction), weight=alpha)
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

    def forward(self, clip: Any, targets: Tensor, epoch: float, teacher_clip: Any = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss and its terms; ``teacher_clip`` is the teacher's own clip (``None``: the student's)."""
        output = model_output(self.model, clip)
        ctx = LossContext(logits=output.logits, targets=targets, inputs=clip, teacher_inputs=teacher_clip,
                          cost=output.cost, decisions=output.decisions, epoch=epoch)
        return self.composer(ctx)
