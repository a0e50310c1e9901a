"""I3D-InceptionV2 (BN-Inception inflated as in I3D): its cost beside the thesis's, parameters,
layout, multipliers, family setting, forward and backward."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from effvid.cli import main
from effvid.cost.static import count_cost
from effvid.errors import ConfigError
from effvid.models import create, create_from_spec, default_spec, get_entry
from effvid.models.i3d_inception import I3DInception

THESIS_GFLOPS = 56.0  # thesis Table 4.2: I3D-InceptionV2, 16 frames at 256 x 256
OURS_16x256 = 43.136598016  # conv + fc GMACs, I3D's temporal strides (module docstring)
THESIS_VARIANT_16x256 = 57.986138112  # reduction modules strided in space only
PARAMS = 24_495_376


def meta_model(**overrides) -> nn.Module:
    with torch.device("meta"):
        return create_from_spec(default_spec("i3d_inception_v2", **overrides))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_cost_at_16_frames_256_px_is_pinned_and_the_gap_to_the_thesis_is_the_temporal_stride():
    ours = count_cost("i3d_inception_v2", (16, 256, 256))
    assert ours.gmacs == pytest.approx(OURS_16x256, rel=1e-9) and ours.params == PARAMS
    assert count_cost("i3d_inception_v2").gmacs == pytest.approx(33.026553856, rel=1e-9)  # default 16 x 224
    assert count_cost("i3d_inception_v2", (16, 256, 256), with_bn=True).gmacs == pytest.approx(43.300663296, rel=1e-9)
    variant = default_spec("i3d_inception_v2", family={"reduction_temporal_stride": 1})
    assert count_cost(variant, (16, 256, 256)).gmacs == pytest.approx(THESIS_VARIANT_16x256, rel=1e-9)
    assert abs(THESIS_VARIANT_16x256 / THESIS_GFLOPS - 1) < 0.04 < abs(OURS_16x256 / THESIS_GFLOPS - 1)


def test_effvid_flops_prints_the_pinned_cost(capsys):
    assert main(["flops", "i3d_inception_v2", "--frames", "16", "--size", "256", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_shape"] == [1, 3, 16, 256, 256]
    assert report["gmacs"] == pytest.approx(OURS_16x256, rel=1e-9) and report["params"] == PARAMS


def test_registry_entry_and_default_input():
    entry = get_entry("i3d_inception_v2")
    spec = entry.default_spec
    assert (entry.kind, entry.spatial_stride, entry.min_frames) == ("3d", 32, 1)
    assert (spec.num_frames, spec.frame_stride, spec.crop_size, spec.test_short_side) == (16, 4, 224, 256)
    assert spec.num_classes == 400 and spec.dropout == 0.5


def test_layout_is_inflated_bn_inception_with_i3d_temporal_downsampling():
    model = meta_model()
    assert isinstance(model, I3DInception) and model.classifier_name == "fc"
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.conv.weight"] == (64, 3, 7, 7, 7)
    assert shapes["conv2.conv.weight"] == (192, 64, 3, 3, 3)
    assert shapes["mixed3.0.branch3x3dbl.conv2.conv.weight"] == (96, 96, 3, 3, 3)
    assert shapes["mixed4.4.branch3x3.conv.conv.weight"] == (192, 128, 3, 3, 3)
    assert shapes["mixed5.1.branch_pool.proj.conv.weight"] == (128, 1024, 1, 1, 1)
    assert shapes["fc.weight"] == (400, 1024)
    widths = [[m.out_channels for m in stage] for stage in (model.mixed3, model.mixed4, model.mixed5)]
    assert widths == [[256, 320, 576], [576, 576, 608, 608, 1056], [1024, 1024]]
    assert model.mixed3[2].branch1x1 is None and isinstance(model.mixed3[2].branch_pool.pool, nn.MaxPool3d)
    with torch.device("meta"):
        assert model.forward_features(torch.empty(1, 3, 16, 224, 224)).shape == (1, 1024, 2, 7, 7)
        thesis = meta_model(family={"reduction_temporal_stride": 1})
        assert thesis.forward_features(torch.empty(1, 3, 16, 224, 224)).shape == (1, 1024, 8, 7, 7)


def test_width_and_depth_multipliers():
    assert params(meta_model(width_mult=0.5)) == 6_248_016
    half = meta_model(depth_mult=0.5)
    assert [len(stage) for stage in (half.mixed3, half.mixed4, half.mixed5)] == [2, 3, 2]  # reductions kept
    assert params(half) == 18_851_920
    double = meta_model(depth_mult=2.0)
    assert [len(stage) for stage in (double.mixed3, double.mixed4, double.mixed5)] == [5, 9, 3]
    assert count_cost(default_spec("i3d_inception_v2", width_mult=0.5), (16, 256, 256)).gmacs == pytest.approx(
        12.942221312, rel=1e-9)


def test_family_settings_are_validated():
    with pytest.raises(ConfigError, match="reduction_temporal_stride"):
        create_from_spec(default_spec("i3d_inception_v2", family={"reduction_temporal_stride": 3}))
    with pytest.raises(ConfigError, match="alpha"):
        create_from_spec(default_spec("i3d_inception_v2", family={"alpha": 4}))


def test_forward_and_backward_on_a_small_clip():
    torch.manual_seed(0)
    model = create("i3d_inception_v2", num_classes=5, width_mult=0.25, depth_mult=0.5).train()
    x = torch.randn(2, 3, 8, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 1, 32, 32)).shape == (1, 5)  # one frame at the smallest crop
