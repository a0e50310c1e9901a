"""The VA-RED2 model: the per-clip cost it reports is what it executes, a base checkpoint
loads into it, and it meets the rest of the dynamic-model contract."""

from __future__ import annotations

import pytest
import torch
from vared2_helpers import randomize_gates, tiny_spec

from effvid.cost.executed import check_reported_cost
from effvid.cost.static import count_cost
from effvid.engine.optim import load_matching
from effvid.errors import ConfigError
from effvid.methods.vared2 import VARed2
from effvid.models import create_from_spec, prepare_for_inference
from effvid.models.fold import FoldedBatchNorm


@pytest.mark.parametrize(("family", "layers"), [("r2plus1d_18", 8), ("x3d_m", 14)])
def test_reported_cost_equals_the_executed_count_and_varies_by_clip(family, layers):
    model = create_from_spec(tiny_spec(family, temporal_choices=3, channel_choices=3))
    assert isinstance(model, VARed2) and model.dynamic and len(model.layer_names) == layers
    randomize_gates(model)
    x = torch.randn(6, 3, 4, 32, 32) * torch.linspace(0.2, 3.0, 6).view(6, 1, 1, 1, 1)
    executed = check_reported_cost(model, x)
    assert executed.min_gmacs < executed.max_gmacs <= model.dense_gmacs()
    with torch.no_grad():
        batched = model.eval()(x)
    assert torch.allclose(batched, executed.logits, atol=1e-4)  # grouped batch == one by one


@pytest.mark.parametrize("family", ["r2plus1d_18", "x3d_m"])
def test_prepared_for_inference_its_batchnorms_fold_and_the_cost_is_still_what_it_executes(family):
    model = create_from_spec(tiny_spec(family, temporal_choices=3, channel_choices=3))
    randomize_gates(model)
    x = torch.randn(4, 3, 4, 32, 32) * torch.linspace(0.2, 3.0, 4).view(4, 1, 1, 1, 1)
    with torch.no_grad():
        expected = model.eval()(x)
    prepare_for_inference(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert norms and all(isinstance(m, FoldedBatchNorm) for m in norms)
    assert all("absorbed" in layer.__dict__ for layer in model.dynamic_layers())
    executed = check_reported_cost(model, x)
    assert torch.allclose(executed.logits, expected, atol=1e-4)


def test_default_wrap_is_the_spatial_convs_of_r2plus1d_and_pointwise_of_x3d():
    r2 = create_from_spec(tiny_spec("r2plus1d_18"))
    assert all(name.endswith(".0.0") and name.startswith("layer") for name in r2.layer_names)
    x3d = create_from_spec(tiny_spec("x3d_m"))
    assert {name.rsplit(".", 1)[1] for name in x3d.layer_names} == {"conv_a", "conv_c"}
    chosen = create_from_spec(tiny_spec("r2plus1d_18", wrap=["layer4.*.conv2.0.3"]))
    assert chosen.layer_names == ("layer4.0.conv2.0.3",)


def test_a_base_checkpoint_loads_by_name_and_a_full_gate_gives_the_base_output():
    spec = tiny_spec("r2plus1d_18")
    base = create_from_spec(spec.replace(method=None)).eval()
    model = create_from_spec(spec)
    copied, _ = load_matching(model, base.state_dict(), "base")
    assert copied == len(base.state_dict())
    with torch.no_grad():
        for layer in model.dynamic_layers():
            layer.gate.fc2.weight.zero_()
            layer.gate.fc2.bias.copy_(torch.tensor([20.0, -20.0, 20.0, -20.0]))
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = model.eval().forward_output(x)
        assert torch.allclose(out.logits, base(x), atol=1e-4)
    gates = sum(layer.gate.macs for layer in model.dynamic_layers()) / 1e9
    assert out.cost.tolist() == pytest.approx([count_cost(base).gmacs + gates] * 2, rel=1e-9)
    assert out.decisions["ratio"].eq(1.0).all()


def test_state_dict_round_trips_and_dense_cost_is_the_static_report():
    spec = tiny_spec("x3d_m")
    model = create_from_spec(spec)
    again = create_from_spec(spec)
    again.load_state_dict(model.state_dict(), strict=True)
    assert count_cost(spec).gmacs == pytest.approx(model.dense_gmacs())
    assert model.dense_gmacs() > count_cost(spec.replace(method=None)).gmacs
    assert sum(model.layer_weights()) == pytest.approx(1.0)


def test_reset_classifier_replaces_the_head_and_the_cost_follows():
    model = create_from_spec(tiny_spec("r2plus1d_18"))
    old = model.get_classifier()
    model.reset_classifier(9)
    assert model.spec.num_classes == 9 and model.get_classifier() is not old
    assert model.get_classifier() is model.network.fc and model.spec.method.name == "vared2"
    x = torch.randn(2, 3, 4, 32, 32)
    assert check_reported_cost(model, x).logits.shape == (2, 9)


def test_training_mode_output_has_decisions_and_the_efficiency_term():
    model = create_from_spec(tiny_spec("r2plus1d_18")).train()
    out = model.forward_output(torch.randn(3, 3, 4, 32, 32))
    layers = len(model.layer_names)
    assert {k: tuple(v.shape) for k, v in out.decisions.items()} == {
        "channel_ratio": (3, layers), "temporal_ratio": (3, layers), "ratio": (3, layers), "layer_gmacs": (3, layers)}
    assert out.cost.shape == (3,) and "efficiency" in model.loss_terms()
    out.decisions["ratio"].sum().backward()
    assert model.dynamic_layers()[0].gate.fc2.weight.grad is not None


@pytest.mark.parametrize(("settings", "message"), [
    ({"bogus": 1}, "unknown key"), ({"temporal_choices": 4}, "temporal_choices"),
    ({"temporal_choices": 1, "channel_choices": 1}, "nothing is dynamic"), ({"wrap": ["nothing.*"]}, "no Conv3d"),
    ({"wrap": ["blocks.*.conv_b"]}, "depthwise"),
])
def test_bad_settings_are_config_errors(settings, message):
    family = "x3d_m" if "blocks" in str(settings) else "r2plus1d_18"
    with pytest.raises(ConfigError, match=message):
        create_from_spec(tiny_spec(family, **settings))
