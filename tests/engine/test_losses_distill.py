"""PAS's KD weight that follows the class count, and margin-ReLU distillation at the pre-ReLU stage ends."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from effvid.config import from_dict
from effvid.engine.losses import (
    DistillConfig,
    FeatureDistillation,
    FrozenTeacher,
    LossComposer,
    LossContext,
    add_distillation_terms,
    classification_term,
    feature_taps,
    resolve_alpha,
)
from effvid.errors import ConfigError
from effvid.models import create
from effvid.models.layers import PreActivationBlock
from effvid.spec import ArchSpec

# ---------------------------------------------------------------------------------------------
# alpha: "auto"


class _SpecOnly(nn.Module):
    """A stand-in student: only its spec's class count matters to the KD weight."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.spec = ArchSpec(name="kd_weight_student", num_classes=num_classes)


def test_auto_alpha_is_1_25_per_class_with_mean_and_1_25_with_batchmean() -> None:
    assert resolve_alpha("auto", num_classes=400) == pytest.approx(500.0)
    assert resolve_alpha("auto", num_classes=16) == pytest.approx(20.0)
    assert resolve_alpha("auto", num_classes=16, reduction="batchmean") == pytest.approx(1.25)
    assert resolve_alpha("auto", num_classes=None, reduction="batchmean") == pytest.approx(1.25)
    assert resolve_alpha(500.0, num_classes=16) == 500.0  # an explicit number is kept (the paper's 500)
    with pytest.raises(ConfigError, match="class count"):
        resolve_alpha("auto", num_classes=None)


def test_alpha_config_accepts_a_number_or_auto() -> None:
    assert DistillConfig().alpha == "auto"
    assert from_dict(DistillConfig, {"alpha": "auto"}).alpha == "auto"
    explicit = from_dict(DistillConfig, {"alpha": 500})
    assert explicit.alpha == 500.0 and isinstance(explicit.alpha, float)
    with pytest.raises(ConfigError, match="alpha"):
        from_dict(DistillConfig, {"alpha": "large"})
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=-1.0)


@pytest.mark.parametrize(("num_classes", "cfg", "weight"), [
    (400, DistillConfig(), 500.0),
    (16, DistillConfig(), 20.0),
    (16, DistillConfig(kl_reduction="batchmean"), 1.25),
    (16, DistillConfig(alpha=500), 500.0),
])
def test_the_kd_term_weight_follows_the_students_class_count(num_classes: int, cfg: DistillConfig,
                                                             weight: float) -> None:
    composer = LossComposer()
    composer.add("ce", classification_term())
    add_distillation_terms(composer, cfg, FrozenTeacher(nn.Identity()), _SpecOnly(num_classes))
    assert composer.weights(0.0)["kd"] == pytest.approx(weight)
    torch.manual_seed(0)
    student, teacher = torch.randn(3, num_classes), torch.randn(3, num_classes)  # Identity teacher: inputs = logits
    total, values = composer(LossContext(logits=student, targets=torch.tensor([0, 1, 2]), inputs=teacher))
    assert float(total) == pytest.approx(float(values["ce"]) + weight * float(values["kd"]), rel=1e-5)


def test_auto_alpha_needs_a_student_with_a_spec() -> None:
    with pytest.raises(ConfigError, match="class count"):
        add_distillation_terms(LossComposer(), DistillConfig(), FrozenTeacher(nn.Identity()), nn.Identity())


# ---------------------------------------------------------------------------------------------
# Margin-ReLU at the pre-ReLU end of each stage


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN affine parameters (as after training; PTV zero-initialises the last BN)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, _BatchNorm)):
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.5)
    return model


#: (model name, spec overrides, stages, feature maps per stage): every backbone family PAS may shrink.
BACKBONES = [
    ("r2plus1d_18", {"width_mult": 0.25, "depth_mult": 0.5, "num_frames": 4, "crop_size": 32}, 4, 1),
    ("r3d_18", {"width_mult": 0.25, "depth_mult": 0.5, "num_frames": 4, "crop_size": 32}, 4, 1),
    ("i3d_r50", {"width_mult": 0.125, "depth_mult": 0.34, "num_frames": 4, "crop_size": 32}, 4, 1),
    ("slowfast_4x16_r50", {"width_mult": 0.25, "depth_mult": 0.34, "num_frames": 16, "crop_size": 32}, 4, 2),
    ("x3d_xs", {"width_mult": 0.5, "depth_mult": 0.5, "num_frames": 4, "crop_size": 32}, 4, 1),
    ("tsm_r18", {"width_mult": 0.25, "depth_mult": 0.5, "num_frames": 2, "crop_size": 32}, 4, 1),
    ("tsn_r50", {"width_mult": 0.125, "depth_mult": 0.34, "num_frames": 2, "crop_size": 32}, 4, 1),
]


def _tiny(name: str, overrides: dict) -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(create(name, num_classes=5, **overrides))


def _clip(model: nn.Module, batch: int = 2) -> Tensor:
    spec = model.spec
    return torch.randn(batch, 3, spec.num_frames, spec.crop_size, spec.crop_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "overrides", "stages", "maps"), BACKBONES, ids=[b[0] for b in BACKBONES])
def test_margin_relu_taps_the_pre_relu_sum_of_each_pathways_last_block(name: str, overrides: dict, stages: int,
                                                                        maps: int) -> None:
    model = _tiny(name, overrides).train()
    taps = feature_taps(model, "margin_relu")
    assert [len(stage) for stage in taps] == [maps] * stages
    assert all(isinstance(tap.block, PreActivationBlock) and tap.module is tap.block.preact
               for stage in taps for tap in stage)
    assert all(tap.block is None for stage in feature_taps(model, "mse") for tap in stage)  # mse: stage outputs
    assert not any("preact" in key for key in model.state_dict())  # checkpoints keep their keys

    recorded: list[Tensor] = []
    outputs: list[Tensor] = []
    handles = [tap.module.register_forward_hook(lambda _m, _i, out: recorded.append(out.clone()))
               for stage in taps for tap in stage]
    handles += [tap.module.register_forward_hook(
        lambda _m, _i, out: outputs.extend(t.clone() for t in (out if isinstance(out, list) else [out])))
        for stage in feature_taps(model, "mse") for tap in stage]
    with torch.no_grad():
        model(_clip(model))
    for h in handles:
        h.remove()
    assert len(recorded) == stages * maps
    assert all(float(t.min()) < 0 for t in recorded), "the margin-ReLU features must be pre-ReLU"
    assert all(float(t.min()) >= 0 for t in outputs), "stage outputs are post-ReLU"


@pytest.mark.parametrize(("name", "overrides", "stages", "maps"), BACKBONES[:1] + BACKBONES[3:5],
                         ids=[b[0] for b in BACKBONES[:1] + BACKBONES[3:5]])
def test_recording_the_pre_relu_features_leaves_the_outputs_unchanged(name: str, overrides: dict, stages: int,
                                                                        maps: int) -> None:
    model = _tiny(name, overrides).eval()
    clip = _clip(model)
    with torch.no_grad():
        expected = copy.deepcopy(model)(clip)
    teacher = FrozenTeacher(model, bn_mode="eval")
    features = FeatureDistillation(copy.deepcopy(model).train(), teacher, kind="margin_relu")
    assert torch.equal(teacher(clip), expected)
    assert len(features.connectors) == stages * maps
    features.close()


def _hand_margins(bn: _BatchNorm) -> Tensor:
    """E[x | x < 0] for x ~ N(beta, gamma^2) per channel, -3 |gamma| when P(x < 0) < 0.1%."""
    out = []
    for gamma, beta in zip(bn.weight.tolist(), bn.bias.tolist()):
        s = abs(gamma)
        z = beta / s
        neg = 0.5 * (1 + math.erf(-z / math.sqrt(2)))
        density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        out.append(beta - s * density / neg if neg > 1e-3 else -3 * s)
    return torch.tensor(out)


def _hand_partial_l2(student: Tensor, target: Tensor) -> float:
    total = 0.0
    for s, t in zip(student.flatten().tolist(), target.flatten().tolist()):
        if not (s <= t and t <= 0):
            total += (s - t) ** 2
    return total / student.numel()


def test_margin_relu_loss_matches_a_hand_computation() -> None:
    overrides = {"width_mult": 0.25, "depth_mult": 0.5, "num_frames": 2, "crop_size": 16}
    teacher_model = _tiny("r2plus1d_18", overrides)
    student = _randomize_bn(create("r2plus1d_18", num_classes=5, **{**overrides, "width_mult": 0.125}), seed=1).train()
    teacher = FrozenTeacher(teacher_model, bn_mode="train")
    features = FeatureDistillation(student, teacher, kind="margin_relu")

    pre_relu: dict[str, list[Tensor]] = {"student": [], "teacher": []}
    stages = [getattr(m, n) for m in (student, teacher_model) for n in m.stage_names]
    handles = [stage[-1].preact.register_forward_hook(
        lambda _m, _i, out, who=who: pre_relu[who].append(out.detach().clone()))
        for stage, who in zip(stages, ["student"] * 4 + ["teacher"] * 4)]
    clip = _clip(student)
    loss = features(LossContext(logits=student(clip), targets=torch.tensor([0, 1]), inputs=clip))
    for h in handles:
        h.remove()

    expected = []
    for i, (s, t) in enumerate(zip(pre_relu["student"], pre_relu["teacher"])):
        bn = getattr(teacher_model, teacher_model.stage_names[i])[-1].conv2[-1]  # the BN before the final ReLU
        target = torch.maximum(t, _hand_margins(bn).view(1, -1, 1, 1, 1))
        assert float(target.min()) < 0  # the margin keeps negative targets
        with torch.no_grad():
            projected = features.connectors[i](s)  # same batch: the connector BN gives the same output again
        expected.append(_hand_partial_l2(projected, target))
    assert float(loss.detach()) == pytest.approx(sum(expected) / len(expected), rel=1e-4)
    loss.backward()
    assert student.layer1[0].conv1[0][0].weight.grad is not None
    assert float(student.layer4[0].conv2[0][0].weight.grad.abs().sum()) > 0
    features.close()
