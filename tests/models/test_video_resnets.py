"""R(2+1)D-18, R3D-18 and I3D-R50: torchvision layout, published costs, multipliers, heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effvid.cost.static import count_cost
from effvid.models import create, default_spec, get_entry

VIDEO_MODELS = ("r2plus1d_18", "r3d_18", "i3d_r50")


def meta_model(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return create(name, **overrides).eval()


def gmacs(name: str, shape: tuple[int, int, int], **overrides) -> float:
    """GMACs per view of ``name`` (with ``overrides``) at ``(T, H, W)``, by effvid's counter."""
    return count_cost(default_spec(name, **overrides), shape).gmacs


@pytest.mark.parametrize(("name", "params", "reference"), [
    ("r2plus1d_18", 31_505_325, 40.519),
    ("r3d_18", 33_371_472, 40.697),
])
def test_torchvision_video_resnets_match_published_cost(name, params, reference):
    cost = count_cost(name, (16, 112, 112))
    assert cost.params == params
    assert cost.gmacs == pytest.approx(reference, rel=0.005)


def test_i3d_r50_matches_pytorchvideo_model_zoo():
    # PTV lists I3D R50 8x8 at 37.53 GFLOPs (256 crop, conv + 5 FLOPs per BN element), 28.04 M.
    cost = count_cost("i3d_r50", (8, 256, 256), with_bn=True)
    assert round(cost.params / 1e6, 2) == 28.04
    assert cost.gmacs == pytest.approx(37.53, rel=0.005)
    assert gmacs("i3d_r50", (8, 256, 256)) == pytest.approx(37.10, rel=0.005)  # conv + fc only


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (channels,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def torchvision_r2plus1d_18_layout() -> dict[str, tuple[int, ...]]:
    """torchvision's r2plus1d_18 state dict (toolkits.md 3.1): key -> shape."""
    layout = {"stem.0.weight": (45, 3, 1, 7, 7), **_bn("stem.1", 45),
              "stem.3.weight": (64, 45, 3, 1, 1), **_bn("stem.4", 64)}
    # (stage input width, stage width, per-block mid widths) as documented.
    stages = [(64, 64, (144, 144)), (64, 128, (230, 288)), (128, 256, (460, 576)), (256, 512, (921, 1152))]
    for i, (cin, planes, mids) in enumerate(stages, start=1):
        for j, mid in enumerate(mids):
            block_in = cin if j == 0 else planes
            for conv, conv_in in (("conv1", block_in), ("conv2", planes)):
                p = f"layer{i}.{j}.{conv}"
                layout |= {f"{p}.0.0.weight": (mid, conv_in, 1, 3, 3), **_bn(f"{p}.0.1", mid),
                           f"{p}.0.3.weight": (planes, mid, 3, 1, 1), **_bn(f"{p}.1", planes)}
        if i > 1:
            layout |= {f"layer{i}.0.downsample.0.weight": (planes, cin, 1, 1, 1), **_bn(f"layer{i}.0.downsample.1", planes)}
    layout |= {"fc.weight": (400, 512), "fc.bias": (400,)}
    return layout


def test_r2plus1d_18_state_dict_is_torchvision_layout():
    ours = {k: tuple(v.shape) for k, v in meta_model("r2plus1d_18").state_dict().items()}
    assert ours == torchvision_r2plus1d_18_layout()


def test_r3d_18_blocks_are_full_3x3x3_convs():
    state = meta_model("r3d_18").state_dict()
    assert tuple(state["stem.0.weight"].shape) == (64, 3, 3, 7, 7)
    assert tuple(state["layer2.0.conv1.0.weight"].shape) == (128, 64, 3, 3, 3)
    assert tuple(state["layer4.1.conv2.0.weight"].shape) == (512, 512, 3, 3, 3)
    assert tuple(state["layer3.0.downsample.0.weight"].shape) == (256, 128, 1, 1, 1)


def test_r2plus1d_18_default_spec_is_torchvision_kinetics_input():
    spec = get_entry("r2plus1d_18").default_spec
    assert (spec.num_classes, spec.num_frames, spec.crop_size, spec.test_short_side) == (400, 16, 112, 128)
    assert spec.mean == (0.43216, 0.394666, 0.37645) and spec.std == (0.22803, 0.22145, 0.216989)


def test_width_multiplier_rounds_stage_widths_and_block_mids():
    model = meta_model("r2plus1d_18", width_mult=0.5)
    widths = [getattr(model, f"layer{i}")[-1].conv2[1].num_features for i in range(1, 5)]
    assert widths == [32, 64, 128, 256]
    assert model.fc.in_features == 256
    # torchvision's per-block mid formula on the rounded widths: layer2 block 0 has (32 -> 64).
    assert model.layer2[0].conv2[0][0].out_channels == (32 * 64 * 27) // (32 * 9 + 3 * 64)
    base = gmacs("r2plus1d_18", (16, 112, 112))
    assert 0.2 < gmacs("r2plus1d_18", (16, 112, 112), width_mult=0.5) / base < 0.3  # cost ~ width squared


def test_depth_multiplier_halves_blocks_per_stage():
    model = meta_model("r2plus1d_18", depth_mult=0.5)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    i3d = meta_model("i3d_r50", depth_mult=0.5)
    assert [len(getattr(i3d, f"layer{i}")) for i in range(1, 5)] == [2, 2, 3, 2]
    assert gmacs("r2plus1d_18", (16, 112, 112), depth_mult=0.5) < gmacs("r2plus1d_18", (16, 112, 112))


def test_i3d_inflation_pattern():
    model = meta_model("i3d_r50")
    kernels = [[block.conv1.kernel_size[0] for block in getattr(model, f"layer{i}")] for i in range(1, 5)]
    assert kernels == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
    assert model.conv1.kernel_size == (5, 7, 7)
    assert all(block.conv2.kernel_size == (1, 3, 3) for block in model.layer3)
    assert tuple(model.forward_features(torch.empty(1, 3, 8, 224, 224, device="meta")).shape) == (1, 2048, 4, 7, 7)
    assert get_entry("i3d_r50").min_frames == 2


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_forward_backward_on_tiny_clip_gives_finite_gradients(name):
    # Full depth and every code path; quarter width keeps the CPU time small.
    torch.manual_seed(0)
    model = create(name, num_classes=5, width_mult=0.25)
    x = torch.randn(2, 3, 4, 32, 48)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_head_split_stages_and_reset_classifier(name):
    torch.manual_seed(0)
    model = create(name, num_classes=7, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    stage_shapes = []
    for stage in model.stage_names:
        model.get_submodule(stage).register_forward_hook(lambda m, i, out: stage_shapes.append(out.shape[1]))
    with torch.no_grad():
        logits = model(x)
        assert len(stage_shapes) == 4 and stage_shapes[-1] == model.fc.in_features
        assert torch.equal(model.forward_head(model.forward_features(x)), logits)
        model.reset_classifier(3)
        assert model(x).shape == (1, 3)
