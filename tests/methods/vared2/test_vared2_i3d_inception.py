"""VA-RED2 on I3D-InceptionV2: the default wrap makes every convolution dynamic, and the cost the
model reports is what it executes."""

from __future__ import annotations

import torch
from torch import nn
from vared2_helpers import randomize_gates, tiny_spec

from effvid.cost.executed import check_reported_cost
from effvid.methods.vared2 import VARed2
from effvid.models import create_from_spec, default_spec
from effvid.spec import MethodSpec


def i3d_spec(**settings):
    return default_spec("i3d_inception_v2", num_classes=5, num_frames=8, frame_stride=1, crop_size=64,
                        width_mult=0.25, depth_mult=0.5, train_resize=(64, 64), test_resize=64,
                        method=MethodSpec("vared2", settings))


def test_default_wrap_is_every_convolution_of_the_stem_and_the_inception_modules():
    spec = i3d_spec()
    model = create_from_spec(spec)
    assert isinstance(model, VARed2)
    with torch.device("meta"):
        base = create_from_spec(spec.replace(method=None))
    convs = [name for name, m in base.named_modules() if isinstance(m, nn.Conv3d)]
    assert list(model.layer_names) == convs
    assert {"conv1.conv", "conv2_reduce.conv", "conv2.conv", "mixed5.1.branch_pool.proj.conv"} <= set(convs)


def test_the_inflated_resnet_keeps_its_own_default():
    model = create_from_spec(tiny_spec("i3d_r50"))
    assert model.layer_names and all(name.startswith("layer") for name in model.layer_names)


def test_reported_cost_equals_the_executed_count_and_varies_by_clip():
    model = create_from_spec(i3d_spec(temporal_choices=3, channel_choices=3))
    randomize_gates(model)
    x = torch.randn(4, 3, 8, 64, 64) * torch.linspace(0.2, 3.0, 4).view(4, 1, 1, 1, 1)
    executed = check_reported_cost(model, x)
    assert executed.min_gmacs < executed.max_gmacs <= model.dense_gmacs()
    # grouped batch == one by one, in float64: the random gates make the last clip's path
    # ill-conditioned (float32 rounding of a batched matrix product reaches 0.4% of its logits on
    # an AVX-512 CPU), while a clip run with another clip's choices would differ by far more
    model.eval().double()
    with torch.no_grad():
        batched = model(x.double())
        alone = torch.cat([model(clip) for clip in x.double().split(1)])
    torch.testing.assert_close(batched, alone, rtol=1e-9, atol=1e-12)
