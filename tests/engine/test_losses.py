"""Distillation (PAS Eq. 7) against a hand computation, the frozen teacher, feature terms, the loss composer."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from effvid.engine.checkpoint import save_checkpoint
from effvid.engine.losses import (
    DistillConfig,
    FeatureDistillation,
    FrozenTeacher,
    LossComposer,
    LossContext,
    LossTermConfig,
    add_distillation_terms,
    classification_loss,
    classification_term,
    distillation_loss,
    kd_kl_divergence,
    margin_relu_partial_l2,
    margins_from_bn,
)
from effvid.errors import ConfigError
from effvid.models.base import ModelBase
from effvid.models.registry import create_from_spec, register_model
from effvid.spec import ArchSpec


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.proj = None if cin == cout and stride == 1 else nn.Conv3d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.proj is None else self.proj(x)))


class TinyStaged(ModelBase):
    """Two residual stages, BN, dropout: enough to exercise teacher modes and stage hooks."""

    stage_names = ("layer1", "layer2")

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        width = max(2, round(8 * spec.width_mult))
        self.stem = nn.Sequential(nn.Conv3d(3, width, 3, 1, 1, bias=False), nn.BatchNorm3d(width), nn.ReLU())
        self.layer1 = nn.Sequential(_Block(width, width, 1))
        self.layer2 = nn.Sequential(_Block(width, 2 * width, 2))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * width, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features.mean(dim=(2, 3, 4))))


SPEC = ArchSpec(name="engine_losses_tiny", num_classes=4, num_frames=4, crop_size=8)
register_model(SPEC.name, default_spec=SPEC, kind="3d", spatial_stride=2)(TinyStaged)


def _softmax(xs: list[float], t: float) -> list[float]:
    exps = [math.exp(x / t) for x in xs]
    return [e / sum(exps) for e in exps]


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [1.0, 0.0, 4.0]]
LABELS = [1, 2]


def _hand_kl_terms(t: float) -> list[float]:
    """Per-sample sum_k p_t,k log(p_t,k / p_s,k) at temperature t."""
    out = []
    for s, te in zip(STUDENT, TEACHER):
        ps, pt = _softmax(s, t), _softmax(te, t)
        out.append(sum(b * math.log(b / a) for a, b in zip(ps, pt)))
    return out


def _hand_ce() -> float:
    return sum(-math.log(_softmax(s, 1.0)[y]) for s, y in zip(STUDENT, LABELS)) / len(LABELS)


def test_kd_kl_matches_a_hand_computation() -> None:
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    per_sample = _hand_kl_terms(5.0)
    mean = sum(per_sample) / (2 * 3)
    assert float(kd_kl_divergence(s, t, temperature=5.0)) == pytest.approx(mean, rel=1e-5)
    assert float(kd_kl_divergence(s, t, temperature=5.0, reduction="batchmean")) == pytest.approx(sum(per_sample) / 2,
                                                                                                  rel=1e-5)
    assert float(kd_kl_divergence(t, t, temperature=5.0)) == pytest.approx(0.0, abs=1e-7)


def test_pas_criterion_is_ce_plus_alpha_t2_kl() -> None:
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    expected = _hand_ce() + 500 * 25 * sum(_hand_kl_terms(5.0)) / 6
    assert float(distillation_loss(s, t, y)) == pytest.approx(expected, rel=1e-5)
    assert float(classification_loss(s, y)) == pytest.approx(_hand_ce(), rel=1e-6)


def test_composer_sums_weighted_terms_and_logs_each_value() -> None:
    s, y = torch.tensor(STUDENT, requires_grad=True), torch.tensor(LABELS)
    teacher = FrozenTeacher(nn.Identity())  # the "inputs" below are already the teacher's logits
    composer = LossComposer()
    composer.add("ce", classification_term())
    add_distillation_terms(composer, DistillConfig(alpha=500), teacher, nn.Identity())
    composer.add_config(LossTermConfig(name="eff", weight=0.0, schedule="linear", final_weight=1.0, ramp_epochs=2),
                        lambda ctx: ctx.cost.mean())
    ctx = LossContext(logits=s, targets=y, inputs=torch.tensor(TEACHER), cost=torch.tensor([2.0, 4.0]),
                      epoch=1.0)
    total, values = composer(ctx)
    kd = 25 * sum(_hand_kl_terms(5.0)) / 6
    assert set(values) == {"ce", "kd", "eff", "loss"}
    assert float(values["ce"]) == pytest.approx(_hand_ce(), rel=1e-5)
    assert float(values["kd"]) == pytest.approx(kd, rel=1e-5)
    assert float(total.detach()) == pytest.approx(_hand_ce() + 500 * kd + 0.5 * 3.0, rel=1e-5)
    assert composer.weights(1.0) == {"ce": 1.0, "kd": 500.0, "eff": 0.5}
    total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0

    composer.activate(["ce"])
    total, values = composer(LossContext(logits=s, targets=y))
    assert set(values) == {"ce", "loss"} and float(total.detach()) == pytest.approx(_hand_ce(), rel=1e-5)
    with pytest.raises(ConfigError, match="'kdd'"):
        composer.activate(["kdd"])
    with pytest.raises(ConfigError, match="twice"):
        composer.add("ce", classification_term())


def test_multilabel_targets_use_bce() -> None:
    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert float(classification_loss(logits, targets)) == pytest.approx(expected, rel=1e-6)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_teacher_never_changes_while_a_student_trains(tmp_path: Path) -> None:
    teacher_model = create_from_spec(SPEC)
    with torch.no_grad():  # give the BN layers non-trivial running statistics
        for bn in (m for m in teacher_model.modules() if isinstance(m, nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    stem = tmp_path / "teacher"
    save_checkpoint(stem, model=teacher_model, class_names=["a", "b", "c", "d"])
    files = sorted(tmp_path.iterdir())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    teacher = FrozenTeacher.from_checkpoint(stem, bn_mode="train")
    before = _state(teacher.model)
    student = create_from_spec(SPEC.replace(width_mult=0.5))
    composer = LossComposer()
    composer.add("ce", classification_term())
    features = add_distillation_terms(composer, DistillConfig(feature="margin_relu", feature_weight=0.1), teacher,
                                      student)
    assert features is not None
    opt = torch.optim.SGD(list(student.parameters()) + list(features.parameters()), lr=0.1)
    student_before = _state(student)
    student.train()
    for _step in range(3):
        clip = torch.randn(4, 3, 4, 8, 8)
        loss, values = composer(LossContext(logits=student(clip), targets=torch.tensor([0, 1, 2, 3]), inputs=clip))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert set(values) == {"ce", "kd", "feature", "loss"} and torch.isfinite(loss)

    after = _state(teacher.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "teacher weights or BN statistics changed"
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.iterdir())} == digests


def test_teacher_bn_modes_use_batch_or_running_statistics() -> None:
    model = create_from_spec(SPEC)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm3d)):
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(2.0)
    reference = copy.deepcopy(model).eval()
    clip = torch.randn(3, 3, 4, 8, 8)
    expected_eval = reference(clip)
    for bn in (m for m in reference.modules() if isinstance(m, nn.BatchNorm3d)):
        bn.train()  # batch statistics, dropout still off
    expected_train = reference(clip)

    train_teacher = FrozenTeacher(copy.deepcopy(model), bn_mode="train")
    out = train_teacher(clip)
    assert torch.allclose(out, expected_train, atol=1e-5) and torch.equal(out, train_teacher(clip))
    assert not out.requires_grad
    assert torch.allclose(FrozenTeacher(copy.deepcopy(model), bn_mode="eval")(clip), expected_eval, atol=1e-5)
    assert not torch.allclose(expected_train, expected_eval, atol=1e-3)


def test_margins_from_bn_are_expected_negative_responses() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, 0.0, 6.0]))
    margins = margins_from_bn(bn)
    # E[x | x < 0] for N(0, s^2) is -s * sqrt(2 / pi); N(6, 1) has almost no negative mass -> -3 s.
    assert margins.tolist() == pytest.approx([-math.sqrt(2 / math.pi), -2 * math.sqrt(2 / math.pi), -3.0], rel=1e-4)


def test_partial_l2_skips_positions_below_a_non_positive_target() -> None:
    target = torch.tensor([-1.0, -1.0, 2.0, 2.0])
    assert float(margin_relu_partial_l2(target.clone(), target)) == 0.0
    student = torch.tensor([-3.0, 0.0, 1.0, 3.0])
    # skipped: position 0 (student <= target <= 0); counted: 1 (1^2), 2 (1^2), 3 (1^2)
    assert float(margin_relu_partial_l2(student, target)) == pytest.approx(3 / 4)


@pytest.mark.parametrize("kind", ["mse", "margin_relu"])
def test_feature_terms_shapes_and_zero_for_an_identical_student(kind: str) -> None:
    model = create_from_spec(SPEC)
    teacher = FrozenTeacher(copy.deepcopy(model), bn_mode="train")
    student = copy.deepcopy(model).train()
    features = FeatureDistillation(student, teacher, kind=kind)
    if kind == "mse":  # same channels: no projection, identical features -> exactly zero
        assert all(isinstance(c, nn.Identity) for c in features.connectors)
        clip = torch.randn(2, 3, 4, 8, 8)
        loss = features(LossContext(logits=student(clip), targets=torch.tensor([0, 1]), inputs=clip))
        assert float(loss.detach()) == pytest.approx(0.0, abs=1e-10)
    else:  # connectors are 1x1x1 conv + BN onto the teacher's channels
        assert [c[0].weight.shape for c in features.connectors] == [(8, 8, 1, 1, 1), (16, 16, 1, 1, 1)]
        assert [type(c[1]) for c in features.connectors] == [nn.BatchNorm3d, nn.BatchNorm3d]

    narrow = create_from_spec(SPEC.replace(width_mult=0.5, crop_size=6)).train()
    reduced = FeatureDistillation(narrow, teacher, kind=kind)
    assert [c[0].weight.shape for c in reduced.connectors] == [(8, 4, 1, 1, 1), (16, 8, 1, 1, 1)]
    clip = torch.randn(2, 3, 4, 6, 6)  # a smaller input than the teacher's: targets are resized
    loss = reduced(LossContext(logits=narrow(clip), targets=torch.tensor([0, 1]), inputs=clip,
                               teacher_inputs=torch.randn(2, 3, 4, 8, 8)))
    assert loss.dim() == 0 and float(loss.detach()) > 0
    loss.backward()
    assert reduced.connectors[0][0].weight.grad is not None and narrow.layer1[0].conv1.weight.grad is not None
