"""DeferredRepeat: the frames a strided spatial layer computed go through BatchNorm, ReLU and the
temporal convolution without being copied, with the plain unit's output and cost."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from vared2_helpers import ConvRecorder, fix_gate, randomize_gates, tiny_spec

from effvid.cost.executed import check_reported_cost, count_executed
from effvid.methods.vared2 import VARed2
from effvid.methods.vared2.deferred import DeferredRepeat
from effvid.models import create_from_spec, prepare_for_inference


def prepared(**settings) -> VARed2:
    """A tiny R(2+1)D VA-RED2 model at 8 frames (stage 1 keeps 8, the next stages halve them),
    prepared for inference."""
    model = create_from_spec(tiny_spec("r2plus1d_18", **settings).replace(num_frames=8))
    assert isinstance(model, VARed2)
    return prepare_for_inference(model)


def plain_copy(model: nn.Module) -> nn.Module:
    """``model`` with its deferred units back to plain ``nn.Sequential`` (the copy-then-convolve path)."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if type(module) is DeferredRepeat:
            module.__class__ = nn.Sequential
    return plain


@pytest.mark.parametrize("v_c", [[1.0, 0.0], [0.0, 0.9]], ids=["every-filter", "half-filters"])
def test_a_strided_layer_feeds_its_computed_frames_to_the_temporal_convolution(v_c):
    model = prepared(temporal_choices=2, channel_choices=2)
    assert sum(isinstance(m, DeferredRepeat) for m in model.modules()) == len(model.layer_names) == 8
    for layer in model.dynamic_layers():  # every clip, every layer: every other frame
        fix_gate(layer, torch.tensor([[0.0, 0.7]]), torch.tensor([v_c]))
    plain = plain_copy(model)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad(), ConvRecorder() as deferred_calls:
        out = model.forward_output(x)
    with torch.no_grad(), ConvRecorder() as plain_calls:
        expected = plain.forward_output(x)
    assert torch.allclose(out.logits, expected.logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.cost, expected.cost)
    # stage 1 (36 mid channels, 16x16): the plain unit convolves 8 repeated frames with 16 filters,
    # the deferred one the 4 computed frames with both tap sets, 32 filters of the same 3 taps
    assert ((1, 36, 8, 16, 16), (16, 36, 3, 1, 1)) in plain_calls.calls
    assert ((1, 36, 4, 16, 16), (32, 36, 3, 1, 1)) in deferred_calls.calls
    assert all(shape[2] == 4 for shape, weight in deferred_calls.calls if weight[1:] == (36, 3, 1, 1))
    # the same MACs as the plain unit (the fixed gates skip the gates' own, so the reported cost
    # is checked against the count with real gates in the next test)
    assert torch.equal(count_executed(model, x).per_sample_gmacs, count_executed(plain, x).per_sample_gmacs)


def test_a_batch_of_clips_deciding_differently_gives_each_clip_its_own_output():
    model = create_from_spec(tiny_spec("r2plus1d_18", temporal_choices=2, channel_choices=1).replace(num_frames=8))
    randomize_gates(model)
    prepare_for_inference(model)
    plain = plain_copy(model)
    x = torch.randn(6, 3, 8, 32, 32) * torch.linspace(0.2, 3.0, 6).view(6, 1, 1, 1, 1)
    with torch.no_grad(), ConvRecorder() as calls:
        out = model.forward_output(x)
        alone = torch.cat([model.forward_output(clip[None]).logits for clip in x])
        expected = plain.forward_output(x)
    ratios = out.decisions["temporal_ratio"]
    assert (ratios == 0.5).any() and (ratios == 1.0).any()  # some layers strided, some not
    stage1 = [(shape[0], weight[0]) for shape, weight in calls.calls if weight[1:] == (36, 3, 1, 1)]
    assert any(filters == 32 and clips < 6 for clips, filters in stage1)  # a group of clips deferred...
    assert any(filters == 16 and clips < 6 for clips, filters in stage1)  # ...and the others not
    assert torch.allclose(out.logits, alone, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out.logits, expected.logits, rtol=1e-4, atol=1e-5)
    check_reported_cost(model, x)


def test_the_unprepared_model_and_training_run_the_plain_unit():
    model = create_from_spec(tiny_spec("r2plus1d_18").replace(num_frames=8))
    unit = model.get_submodule("layer1.0.conv1.0")
    assert isinstance(unit, DeferredRepeat)
    x = torch.randn(2, 3, 8, 32, 32)
    model.train()
    model(x).sum().backward()  # the training path: every choice mixed, gradients through it
    assert unit[0].weight.grad is not None and unit[3].weight.grad is not None
    with torch.no_grad():
        model.eval()
        assert not unit[0].runs_absorbed()  # nothing absorbed yet: the plain path, which fold tracing needs
        assert torch.allclose(model(x), plain_copy(model)(x))
