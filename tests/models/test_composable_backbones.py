"""Backbones take their residual block as an argument, and replace_modules rewrites a model in place."""

from __future__ import annotations

import torch
from torch import nn

from effvid.models import create, default_spec
from effvid.models.base import replace_modules
from effvid.models.i3d import InflatedBottleneck, build_i3d_resnet
from effvid.models.layers import BasicBlock, Bottleneck
from effvid.models.resnet2d import build_resnet2d, resnet_from_spec

STAGES = ("layer1", "layer2", "layer3", "layer4")


class CountsCalls(nn.Module):
    """Mixin for a block class: counts the block's forward calls in ``calls``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


class CountingBasicBlock(CountsCalls, BasicBlock):
    """A BasicBlock that counts its forward calls."""


class CountingInflatedBottleneck(CountsCalls, InflatedBottleneck):
    """An InflatedBottleneck that counts its forward calls."""


def stage_blocks(model: nn.Module) -> list[list[nn.Module]]:
    return [list(model.get_submodule(stage)) for stage in STAGES]


def test_a_custom_block_builds_every_stage_of_a_2d_resnet():
    model = build_resnet2d(block=CountingBasicBlock, stage_blocks=(2, 1, 1, 1), num_classes=4, width_mult=0.25).eval()
    standard = build_resnet2d(block=BasicBlock, stage_blocks=(2, 1, 1, 1), num_classes=4, width_mult=0.25)
    assert list(model.state_dict()) == list(standard.state_dict())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 4)
    blocks = stage_blocks(model)
    assert [len(stage) for stage in blocks] == [2, 1, 1, 1]
    assert all(isinstance(b, CountingBasicBlock) and b.calls == 1 for stage in blocks for b in stage)


def test_a_block_factory_gets_the_stride_and_shift_of_each_block():
    calls = []

    def factory(in_channels: int, planes: int, *, stride: int, shift_div: int) -> nn.Module:
        calls.append((in_channels, planes, stride, shift_div))
        return Bottleneck(in_channels, planes, stride=stride, shift_div=shift_div)

    factory.expansion = Bottleneck.expansion
    model = build_resnet2d(block=factory, stage_blocks=(1, 1, 1, 1), width_mult=0.125, shift_div=8)
    assert calls == [(8, 8, 1, 8), (32, 16, 2, 8), (64, 32, 2, 8), (128, 64, 2, 8)]
    assert model.fc.in_features == 64 * Bottleneck.expansion


def test_resnet_from_spec_uses_the_standard_block_unless_given_one():
    spec = default_spec("resnet18", width_mult=0.25, depth_mult=0.25)
    assert type(resnet_from_spec("resnet18", spec).layer1[0]) is BasicBlock
    assert type(resnet_from_spec("resnet50", spec).layer1[0]) is Bottleneck
    custom = resnet_from_spec("resnet18", spec, block=CountingBasicBlock)
    assert all(isinstance(b, CountingBasicBlock) for stage in stage_blocks(custom) for b in stage)


def test_a_custom_block_builds_every_stage_of_i3d():
    model = build_i3d_resnet(block=CountingInflatedBottleneck, stage_blocks=(1, 2, 1, 1), num_classes=4,
                             width_mult=0.125).eval()
    standard = build_i3d_resnet(stage_blocks=(1, 2, 1, 1), num_classes=4, width_mult=0.125)
    assert list(model.state_dict()) == list(standard.state_dict())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 4)
    blocks = stage_blocks(model)
    assert all(isinstance(b, CountingInflatedBottleneck) and b.calls == 1 for stage in blocks for b in stage)
    # The I3D pattern reaches the block: layer2 alternates 3 and 1 frames in conv1.
    assert [b.conv1.kernel_size[0] for b in blocks[1]] == [3, 1]


class Wrapped(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_replace_modules_wraps_every_conv3d_once_and_keeps_the_output():
    torch.manual_seed(0)
    model = create("r2plus1d_18", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]

    replaced = replace_modules(model, lambda name, m: isinstance(m, nn.Conv3d), lambda name, m: Wrapped(m))

    wrappers = [m for m in model.modules() if isinstance(m, Wrapped)]
    assert replaced == len(wrappers) == len(convs) > 20
    assert all(type(w.inner) is nn.Conv3d for w in wrappers)
    assert {id(w.inner) for w in wrappers} == {id(c) for c in convs}
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_replace_modules_leaves_a_nested_match_to_the_outer_factory():
    model = create("r2plus1d_18", num_classes=5, width_mult=0.25)
    seen = []

    def factory(name: str, module: nn.Module) -> nn.Module:
        seen.append(name)
        return Wrapped(module)

    replace_modules(model, lambda name, m: name == "layer1.0" or isinstance(m, nn.Conv3d), factory)
    assert "layer1.0" in seen and not [n for n in seen if n.startswith("layer1.0.")]
    assert isinstance(model.layer1[0], Wrapped)
    assert not any(isinstance(m, Wrapped) for m in model.layer1[0].inner.modules())
    assert isinstance(model.layer1[1].conv1[0][0], Wrapped)
