"""The executed-op counter: hand-checked MACs per sample, dynamic models held to their reported
cost, and agreement with the static counter on every registered model."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.cost.executed import ExecutedCost, check_reported_cost, count_executed
from effvid.cost.static import BN_MACS_PER_ELEMENT, count_cost
from effvid.models import create_from_spec, default_spec, get_entry, list_models
from effvid.models.base import ModelBase, ModelOutput
from handcounted import BN_ELEMENTS, CONV_MACS, LINEAR_MACS, ConvLinear


def test_hand_checked_macs_per_sample_with_and_without_batch_norm():
    model = ConvLinear()
    x = torch.randn(3, 3, 4, 16, 16)
    plain = count_executed(model, x)
    assert plain.per_sample_gmacs.dtype == torch.float64 and plain.per_sample_gmacs.shape == (3,)
    assert plain.per_sample_gmacs.tolist() == pytest.approx([(CONV_MACS + LINEAR_MACS) / 1e9] * 3, rel=1e-12)
    with_bn = count_executed(model, x, with_bn=True)
    extra = (with_bn.per_sample_gmacs - plain.per_sample_gmacs) * 1e9
    assert extra.tolist() == pytest.approx([BN_MACS_PER_ELEMENT * BN_ELEMENTS] * 3)
    assert plain.reported is None and plain.input_shape == (1, 3, 4, 16, 16)
    assert with_bn.with_bn and not plain.with_bn


def test_logits_are_the_eval_mode_outputs_and_every_module_mode_is_restored():
    model = ConvLinear().train()
    model.bn.eval()  # a frozen BatchNorm inside a training model keeps its own mode
    x = torch.randn(2, 3, 4, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    executed = count_executed(model, x)
    assert model.training and model.conv.training and not model.bn.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats untouched
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.allclose(executed.logits, expected, atol=1e-6)


def test_a_static_model_passes_the_check_against_the_static_count():
    model = ConvLinear()
    x = torch.randn(2, 3, 4, 16, 16)
    executed = check_reported_cost(model, x)
    assert executed.per_sample_gmacs.tolist() == pytest.approx([count_cost(model, x.shape[1:]).gmacs] * 2, rel=1e-12)


def test_to_dict_is_json_and_carries_mean_min_max():
    executed = count_executed(GatedToy(), gate_batch())
    out = json.loads(json.dumps(executed.to_dict()))
    assert out["per_sample_gmacs"] == pytest.approx(executed.per_sample_gmacs.tolist())
    assert out["reported_gmacs"] == pytest.approx(executed.reported.tolist())
    assert out["min_gmacs"] == pytest.approx(BASE_MACS / 1e9) and out["max_gmacs"] == pytest.approx((BASE_MACS + EXTRA_MACS) / 1e9)
    assert out["mean_gmacs"] == pytest.approx((BASE_MACS + EXTRA_MACS / 2) / 1e9)
    assert out["input_shape"] == [1, 3, 2, 8, 8] and out["with_bn"] is False
    assert isinstance(executed, ExecutedCost)


# A toy dynamic model: a stem conv for every sample, an extra residual conv block only for the
# samples its gate opens (mean input > 0), run on the sub-batch of those samples.
STEM_MACS = 4 * 2 * 8 * 8 * 3 * 27  # Conv3d(3, 4, 3, padding=1) at 2x8x8
EXTRA_MACS = 4 * 2 * 8 * 8 * 4 * 27  # Conv3d(4, 4, 3, padding=1) at 2x8x8
FC_MACS = 4 * 5
BASE_MACS = STEM_MACS + FC_MACS


class GatedToy(ModelBase):
    """``mode``: "honest" skips closed samples and reports what ran; "dense_report" skips but
    reports the dense cost for every sample; "masked" runs the block densely, multiplies the
    gate onto it and reports the gated cost."""

    dynamic = True

    def __init__(self, mode: str = "honest") -> None:
        super().__init__()
        self.mode = mode
        self.stem = nn.Conv3d(3, 4, 3, padding=1)
        self.extra = nn.Conv3d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward_features(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        return h + self.extra(h)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean((2, 3, 4)))

    def forward_output(self, x: Tensor) -> ModelOutput:
        gate = x.mean((1, 2, 3, 4)) > 0
        h = self.stem(x)
        if self.mode == "masked":
            h = h + self.extra(h) * gate.view(-1, 1, 1, 1, 1).to(h.dtype)
        else:
            chosen = gate.nonzero().flatten()
            if chosen.numel():
                h = h.index_add(0, chosen, self.extra(h[chosen]))
        executed = gate if self.mode != "dense_report" else torch.ones_like(gate)
        cost = (BASE_MACS + EXTRA_MACS * executed.double()) / 1e9
        return ModelOutput(logits=self.forward_head(h), cost=cost, decisions={"gate": gate})

    def dense_gmacs(self) -> float:
        return (BASE_MACS + EXTRA_MACS) / 1e9


def gate_batch() -> Tensor:
    """Four clips (3, 2, 8, 8): samples 0 and 2 open the gate, 1 and 3 skip the block."""
    x = torch.randn(4, 3, 2, 8, 8).abs() + 0.1
    x[1] *= -1
    x[3] *= -1
    return x


def test_a_dynamic_model_that_skips_what_it_reports_passes():
    model = GatedToy()
    x = gate_batch()
    executed = check_reported_cost(model, x)
    assert (executed.per_sample_gmacs * 1e9).tolist() == pytest.approx([BASE_MACS + EXTRA_MACS, BASE_MACS] * 2)
    assert torch.equal(executed.reported, executed.per_sample_gmacs)
    with torch.no_grad():
        batched = model.eval().forward_output(x)
    assert torch.allclose(executed.logits, batched.logits, atol=1e-5)  # one at a time = batched
    assert torch.allclose(executed.reported, batched.cost)


@pytest.mark.parametrize("mode, wrong", [("dense_report", [1, 3]), ("masked", [1, 3])])
def test_a_model_whose_reported_cost_is_not_what_ran_fails_naming_the_samples(mode, wrong):
    with pytest.raises(AssertionError) as failure:
        check_reported_cost(GatedToy(mode), gate_batch())
    message = str(failure.value)
    assert "GatedToy" in message and f"on {len(wrong)} of 4 samples" in message
    for i in range(4):
        assert (f"sample {i}:" in message) == (i in wrong)
    sign = "-" if mode == "dense_report" else "+"
    assert f"(executed - reported = {sign}{EXTRA_MACS} MACs)" in message


def test_a_dynamic_model_that_reports_no_cost_fails():
    class Silent(GatedToy):
        def forward_output(self, x: Tensor) -> ModelOutput:
            return ModelOutput(logits=super().forward_output(x).logits)

    with pytest.raises(AssertionError, match="reports no per-sample cost"):
        check_reported_cost(Silent(), gate_batch())


def test_gathers_and_index_ops_cost_nothing_but_attention_on_the_cpu_is_counted():
    class GatherAttend(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            tokens = x.flatten(2).transpose(1, 2)  # (1, 96, 3)
            picked = torch.index_select(tokens, 1, torch.arange(0, 96, 2, device=x.device))  # (1, 48, 3)
            q = picked.unsqueeze(1).expand(1, 2, 48, 3)  # two heads
            return F.scaled_dot_product_attention(q, q, q).mean((1, 2))

    executed = check_reported_cost(GatherAttend(), torch.randn(2, 3, 2, 6, 8))
    # q @ k^T and attn @ v: 2 heads x 48 x 48 x 3 MACs each
    assert (executed.per_sample_gmacs * 1e9).tolist() == pytest.approx([2 * 2 * 48 * 48 * 3] * 2)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least one sample"):
        count_executed(ConvLinear(), torch.randn(0, 3, 4, 16, 16))

    class TwoCosts(GatedToy):
        def forward_output(self, x: Tensor) -> ModelOutput:
            out = super().forward_output(x)
            return ModelOutput(out.logits, torch.zeros(2), out.decisions)

    with pytest.raises(ValueError, match="shape"):
        count_executed(TwoCosts(), gate_batch())


def small_zoo_input(name: str) -> tuple[object, tuple[int, int, int, int]]:
    """The smallest input that still runs every stage: crop twice the network's spatial stride,
    two frames (two slow frames for SlowFast), half width."""
    entry = get_entry(name)
    frames = 2 * entry.min_frames if entry.kind == "slowfast" else max(entry.min_frames, 2)
    crop = 2 * entry.spatial_stride
    spec = default_spec(name, num_classes=10, num_frames=frames, crop_size=crop, width_mult=0.5)
    return spec, (3, frames, crop, crop)


@pytest.mark.parametrize("name", list_models())
def test_executed_count_equals_the_static_count_on_every_registered_model(name):
    spec, shape = small_zoo_input(name)
    model = create_from_spec(spec)
    x = torch.randn(2, *shape)
    for with_bn in (False, True):
        executed = count_executed(model, x, with_bn=with_bn).per_sample_gmacs
        static = count_cost(model, shape, with_bn=with_bn).gmacs
        assert static > 0
        assert executed.tolist() == pytest.approx([static, static], rel=1e-9, abs=0)
