"""2D frame models (ResNet, MobileNetV2, EfficientNet) and TSN/TSM: layout, costs, consensus, shift."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effvid.cost.static import count_cost
from effvid.models import create, default_spec, get_entry
from effvid.models.layers import temporal_shift

FRAME_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2", "efficientnet_b0", "efficientnet_b1",
                "efficientnet_b2", "efficientnet_b3", "tsn_r18", "tsn_r50", "tsm_r18", "tsm_r50",
                "tsm_mobilenet_v2")


def meta_model(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return create(name, **overrides).eval()


def gmacs(name: str, shape: tuple[int, int, int], **overrides) -> float:
    """GMACs per view of ``name`` (with ``overrides``) at ``(T, H, W)``, by effvid's counter."""
    return count_cost(default_spec(name, **overrides), shape).gmacs


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "crop", "params", "reference"), [
    ("resnet18", 224, 11_689_512, 1.814),
    ("resnet34", 224, 21_797_672, 3.664),
    ("resnet50", 224, 25_557_032, 4.089),
    ("mobilenet_v2", 224, 3_504_872, 0.301),
    ("efficientnet_b0", 224, 5_288_548, 0.386),
    ("efficientnet_b1", 240, 7_794_184, 0.687),
    ("efficientnet_b2", 288, 9_109_994, 1.088),
    ("efficientnet_b3", 300, 12_233_232, 1.827),
])
def test_per_frame_cost_and_params_match_torchvision(name, crop, params, reference):
    spec = default_spec(name)
    assert spec.crop_size == crop and spec.num_classes == 1000
    cost = count_cost(spec, (1, crop, crop))
    assert cost.params == params
    assert cost.gmacs == pytest.approx(reference, rel=0.005)


def test_clip_cost_is_frames_times_frame_cost_and_shift_is_free():
    per_frame = gmacs("resnet50", (1, 224, 224), num_classes=400)
    tsn = gmacs("tsn_r50", (8, 224, 224))
    assert tsn == pytest.approx(8 * per_frame, rel=1e-9)
    assert tsn == pytest.approx(32.7, rel=0.005)  # mmaction2's 32.88 includes 2 FLOPs per BN element
    assert gmacs("tsm_r50", (8, 224, 224)) == pytest.approx(tsn, rel=1e-9)


def test_torchvision_key_layout():
    r18 = shapes(meta_model("resnet18"))
    assert r18["conv1.weight"] == (64, 3, 7, 7) and r18["fc.weight"] == (1000, 512)
    assert r18["layer2.0.downsample.0.weight"] == (128, 64, 1, 1) and "layer2.0.downsample.1.running_var" in r18
    assert "layer1.0.downsample.0.weight" not in r18
    r50 = shapes(meta_model("resnet50"))
    assert r50["layer1.0.conv3.weight"] == (256, 64, 1, 1) and r50["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert r50["layer4.2.bn3.weight"] == (2048,) and r50["fc.weight"] == (1000, 2048)
    mnv2 = shapes(meta_model("mobilenet_v2"))
    assert mnv2["features.0.0.weight"] == (32, 3, 3, 3)
    assert mnv2["features.1.conv.0.0.weight"] == (32, 1, 3, 3) and mnv2["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert mnv2["features.2.conv.0.0.weight"] == (96, 16, 1, 1) and mnv2["features.2.conv.3.weight"] == (24,)
    assert mnv2["features.18.0.weight"] == (1280, 320, 1, 1) and mnv2["classifier.1.weight"] == (1000, 1280)
    b0 = shapes(meta_model("efficientnet_b0"))
    assert b0["features.1.0.block.1.fc1.weight"] == (8, 32, 1, 1) and b0["features.1.0.block.2.0.weight"] == (16, 32, 1, 1)
    assert b0["features.2.0.block.0.0.weight"] == (96, 16, 1, 1) and b0["features.2.0.block.2.fc1.weight"] == (4, 96, 1, 1)
    assert b0["features.6.3.block.1.0.weight"] == (1152, 1, 5, 5) and b0["features.8.0.weight"] == (1280, 320, 1, 1)
    assert b0["classifier.1.weight"] == (1000, 1280)


def test_efficientnet_compound_scaling_rounds_like_torchvision():
    b3 = meta_model("efficientnet_b3")
    # torchvision B3 widths 40, 24, 32, 48, 96, 136, 232, 384 -> head 1536; depths ceil(1.4 n).
    assert b3.features[0][0].out_channels == 40
    assert [stage[-1].out_channels for stage in b3.features[1:8]] == [24, 32, 48, 96, 136, 232, 384]
    assert [len(stage) for stage in b3.features[1:8]] == [2, 3, 3, 5, 5, 6, 2]
    assert b3.classifier[1].in_features == 1536


def test_width_and_depth_multipliers_follow_rounding_rules():
    r18 = meta_model("resnet18", width_mult=0.5, depth_mult=0.5)
    assert r18.conv1.out_channels == 32 and r18.fc.in_features == 256
    assert [len(getattr(r18, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    r50 = meta_model("resnet50", depth_mult=0.5)
    assert [len(getattr(r50, f"layer{i}")) for i in range(1, 5)] == [2, 2, 3, 2]
    mnv2 = meta_model("mobilenet_v2", width_mult=0.5)
    # divisor-8 rounding; the last conv keeps 1280 below width 1 (torchvision's rule).
    assert mnv2.features[0][0].out_channels == 16 and mnv2.features[1].out_channels == 8
    assert mnv2.classifier[1].in_features == 1280
    full = gmacs("resnet18", (1, 224, 224))
    half_width = gmacs("resnet18", (1, 224, 224), width_mult=0.5)
    assert 0.2 < half_width / full < 0.3  # cost ~ width squared
    assert gmacs("resnet18", (1, 224, 224), width_mult=0.5, depth_mult=0.5) < half_width


def test_default_specs():
    for name in ("tsn_r18", "tsn_r50", "tsm_r18", "tsm_r50", "tsm_mobilenet_v2"):
        spec = get_entry(name).default_spec
        assert (spec.sampling, spec.num_frames, spec.crop_size, spec.num_classes) == ("segments", 8, 224, 400)
        assert get_entry(name).kind == "2d"
    assert get_entry("resnet50").default_spec.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_forward_backward_on_tiny_clip_gives_finite_gradients(name):
    # Full depth and every code path; quarter width keeps the CPU time small.
    torch.manual_seed(0)
    model = create(name, num_classes=5, width_mult=0.25)
    logits = model(torch.randn(1, 3, 3, 32, 32))
    assert logits.shape == (1, 5)
    logits.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ("resnet18", "mobilenet_v2", "efficientnet_b0", "tsm_r18"))
def test_head_split_stages_and_reset_classifier(name):
    torch.manual_seed(0)
    model = create(name, num_classes=7, width_mult=0.25).eval()
    x = torch.randn(2, 3, 3, 64, 64)
    stage_outputs = []
    for stage in model.stage_names:
        model.get_submodule(stage).register_forward_hook(lambda m, i, out: stage_outputs.append(out.shape))
    with torch.no_grad():
        logits = model(x)
        assert [s[0] for s in stage_outputs] == [6] * 4  # folded B*T
        assert [s[-1] for s in stage_outputs] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
        assert torch.equal(model.forward_head(model.forward_features(x)), logits)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)


def test_tsn_is_average_of_per_frame_logits_and_tsm_is_not():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 32, 32)
    for name, independent in (("tsn_r18", True), ("tsm_r18", False)):
        model = create(name, num_classes=6, width_mult=0.25).eval()
        with torch.no_grad():
            per_frame = torch.stack([model(x[:, :, t:t + 1]) for t in range(4)], dim=1).mean(dim=1)
            assert torch.allclose(model(x), per_frame, atol=1e-5) is independent


def test_temporal_shift_moves_one_eighth_each_way():
    b, t, c = 2, 5, 16
    clip = torch.arange(b * t * c * 3, dtype=torch.float32).view(b, t, c, 3, 1) + 1
    out = temporal_shift(clip.view(b * t, c, 3, 1), t, 8).view(b, t, c, 3, 1)
    fold = c // 8
    assert torch.equal(out[:, :-1, :fold], clip[:, 1:, :fold]) and (out[:, -1, :fold] == 0).all()
    assert torch.equal(out[:, 1:, fold:2 * fold], clip[:, :-1, fold:2 * fold]) and (out[:, 0, fold:2 * fold] == 0).all()
    assert torch.equal(out[:, :, 2 * fold:], clip[:, :, 2 * fold:])
    moved = (out != clip).any(dim=(0, 1, 3, 4))
    assert moved.sum() == 2 * fold


@pytest.mark.parametrize(("name", "block_path", "branch_path"), [
    ("tsm_r18", "layer2.1", "layer2.1.conv1"),
    ("tsm_r50", "layer1.1", "layer1.1.conv1"),
    ("tsm_mobilenet_v2", "features.3", "features.3.conv.0.0"),
])
def test_tsm_shifts_the_residual_branch_input(name, block_path, branch_path):
    model = create(name, num_classes=4, width_mult=0.25).eval()
    seen = {}
    model.get_submodule(block_path).register_forward_pre_hook(lambda m, args: seen.__setitem__("block", args[0]))
    model.get_submodule(branch_path).register_forward_pre_hook(lambda m, args: seen.__setitem__("branch", args[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 2, 32, 32))  # another clip length first: the shift follows T
        model(torch.randn(2, 3, 3, 32, 32))
    assert torch.equal(seen["branch"], temporal_shift(seen["block"], 3, 8))
    assert not torch.equal(seen["branch"], seen["block"])


def test_tsm_state_dict_equals_2d_backbone_and_loads_imagenet_weights():
    for tsm, backbone in (("tsm_r50", "resnet50"), ("tsm_mobilenet_v2", "mobilenet_v2")):
        imagenet = create(backbone, width_mult=0.25, num_classes=400)
        model = create(tsm, width_mult=0.25)
        assert shapes(model) == shapes(imagenet)
        model.load_state_dict(imagenet.state_dict(), strict=True)
        assert torch.equal(model.state_dict()["conv1.weight" if backbone == "resnet50" else "features.0.0.weight"],
                           imagenet.state_dict()["conv1.weight" if backbone == "resnet50" else "features.0.0.weight"])
