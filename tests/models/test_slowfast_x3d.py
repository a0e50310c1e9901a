"""SlowFast and X3D: published costs, PyTorchVideo keys, pathways, multipliers, forward/backward."""

from __future__ import annotations

import functools
import math
import re

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from effvid.errors import ConfigError
from effvid.models import create, get_entry, round_channels

SLOWFAST = ("slowfast_4x16_r50", "slowfast_8x8_r50")
X3D = ("x3d_xs", "x3d_s", "x3d_m", "x3d_l")


@functools.cache
def meta_model(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return create(name, **overrides).eval()


@functools.cache
def gmacs(name: str, frames: int, size: int, **overrides) -> float:
    """Conv + linear + matmul GMACs of one view (FLOPs / 2), counted on the meta device."""
    with torch.device("meta"), torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta_model(name, **overrides)(torch.empty(1, 3, frames, size, size))
    return counter.get_total_flops() / 2e9


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (model, T, size, GMACs, params in millions) from shared/reference/flops.md.
PUBLISHED = [
    ("slowfast_4x16_r50", 32, 224, 27.64, 34.48),
    ("slowfast_4x16_r50", 32, 256, 36.10, 34.48),
    ("slowfast_8x8_r50", 32, 256, 65.71, 34.57),
    ("x3d_xs", 4, 160, 0.605, 3.79),
    ("x3d_s", 13, 160, 1.963, 3.79),
    ("x3d_m", 16, 224, 4.73, 3.79),
    ("x3d_m", 16, 256, 6.19, 3.79),
    ("x3d_l", 16, 312, 18.37, 6.15),
]


@pytest.mark.parametrize(("name", "frames", "size", "published", "mparams"), PUBLISHED)
def test_cost_and_params_match_published_figures(name, frames, size, published, mparams):
    assert gmacs(name, frames, size) == pytest.approx(published, rel=0.005)
    assert round(params(meta_model(name)) / 1e6, 2) == mparams


@pytest.mark.parametrize("name", SLOWFAST + X3D)
def test_default_spec_is_the_published_input(name):
    spec = get_entry(name).default_spec
    expected = {
        "slowfast_4x16_r50": (32, 2, 224, 256, 8, 5),
        "slowfast_8x8_r50": (32, 2, 224, 256, 4, 7),
        "x3d_xs": (4, 12, 160, 182, None, None),
        "x3d_s": (13, 6, 160, 182, None, None),
        "x3d_m": (16, 5, 224, 256, None, None),
        "x3d_l": (16, 5, 312, 356, None, None),
    }[name]
    frames, stride, crop, test_side, alpha, fusion = expected
    assert (spec.num_frames, spec.frame_stride, spec.crop_size, spec.test_short_side) == (frames, stride, crop, test_side)
    assert spec.num_classes == 400 and spec.mean == (0.45,) * 3 and spec.std == (0.225,) * 3
    if alpha is not None:
        entry = get_entry(name)
        assert spec.family == {"alpha": alpha, "beta_inv": 8, "fusion_kernel": fusion}
        assert entry.kind == "slowfast" and entry.min_frames == alpha


def test_slowfast_state_dict_follows_pytorchvideo_keys():
    shapes = {k: tuple(v.shape) for k, v in meta_model("slowfast_4x16_r50").state_dict().items()}
    assert shapes["blocks.0.multipathway_blocks.0.conv.weight"] == (64, 3, 1, 7, 7)
    assert shapes["blocks.0.multipathway_blocks.1.conv.weight"] == (8, 3, 5, 7, 7)
    assert shapes["blocks.0.multipathway_fusion.conv_fast_to_slow.weight"] == (16, 8, 5, 1, 1)
    assert shapes["blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight"] == (256, 80, 1, 1, 1)
    assert shapes["blocks.1.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"] == (64, 80, 1, 1, 1)
    assert shapes["blocks.3.multipathway_blocks.0.res_blocks.5.branch2.conv_a.weight"] == (256, 1024, 3, 1, 1)
    assert shapes["blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_b.weight"] == (64, 64, 1, 3, 3)
    assert shapes["blocks.3.multipathway_fusion.conv_fast_to_slow.weight"] == (256, 128, 5, 1, 1)
    assert shapes["blocks.6.proj.weight"] == (400, 2304)
    res = r"blocks\.[1-4]\.multipathway_blocks\.[01]\.res_blocks\.\d+\."
    bn = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
    allowed = re.compile(
        "|".join(
            [
                rf"blocks\.0\.multipathway_blocks\.[01]\.(conv\.weight|norm\.{bn})",
                rf"blocks\.[0-3]\.multipathway_fusion\.(conv_fast_to_slow\.weight|norm\.{bn})",
                rf"{res}(branch1_conv\.weight|branch1_norm\.{bn})",
                rf"{res}branch2\.(conv_[abc]\.weight|norm_[abc]\.{bn})",
                r"blocks\.6\.proj\.(weight|bias)",
            ]
        )
    )
    assert [k for k in shapes if not allowed.fullmatch(k)] == []
    assert "blocks.4.multipathway_fusion.conv_fast_to_slow.weight" not in shapes  # no fusion after res5
    assert "blocks.1.multipathway_blocks.0.res_blocks.1.branch1_conv.weight" not in shapes


def test_x3d_state_dict_follows_pytorchvideo_keys():
    shapes = {k: tuple(v.shape) for k, v in meta_model("x3d_m").state_dict().items()}
    assert shapes["blocks.0.conv.conv_t.weight"] == (24, 3, 1, 3, 3)  # spatial, despite the name
    assert shapes["blocks.0.conv.conv_xy.weight"] == (24, 1, 5, 1, 1)  # temporal depthwise
    assert shapes["blocks.1.res_blocks.0.branch1_conv.weight"] == (24, 24, 1, 1, 1)
    assert shapes["blocks.1.res_blocks.0.branch2.conv_b.weight"] == (54, 1, 3, 3, 3)
    assert shapes["blocks.4.res_blocks.6.branch2.conv_c.weight"] == (192, 432, 1, 1, 1)
    assert shapes["blocks.5.pool.pre_conv.weight"] == (432, 192, 1, 1, 1)
    assert shapes["blocks.5.pool.post_conv.weight"] == (2048, 432, 1, 1, 1)
    assert shapes["blocks.5.proj.weight"] == (400, 2048)
    se_widths = {f"blocks.{i}": shapes[f"blocks.{i}.res_blocks.0.branch2.norm_b.1.block.0.weight"][0] for i in range(1, 5)}
    assert se_widths == {"blocks.1": 8, "blocks.2": 8, "blocks.3": 16, "blocks.4": 32}
    depths = [len({k.split(".")[3] for k in shapes if k.startswith(f"blocks.{i}.res_blocks.")}) for i in range(1, 5)]
    assert depths == [3, 5, 11, 7]
    # SE only on even-indexed blocks; every block has its BN under norm_b.0.
    for k in range(11):
        has_se = f"blocks.3.res_blocks.{k}.branch2.norm_b.1.block.2.bias" in shapes
        assert has_se == (k % 2 == 0)
        assert f"blocks.3.res_blocks.{k}.branch2.norm_b.0.running_mean" in shapes


@pytest.mark.parametrize("name", SLOWFAST + X3D)
def test_every_conv_is_a_plain_conv3d_and_stages_resolve(name):
    model = meta_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(type(m) is nn.Conv3d for m in convs)
    assert len(model.stage_names) == 4
    for stage in model.stage_names:
        assert model.get_submodule(stage) is not None


def test_slow_pathway_takes_packpathway_frames_of_the_fast_clip():
    model = meta_model("slowfast_4x16_r50")
    clip = torch.arange(32.0).view(1, 1, 32, 1, 1).expand(1, 3, 32, 2, 2)
    slow, fast = model.pathways(clip)
    assert slow[0, 0, :, 0, 0].tolist() == [0.0, 10.0, 20.0, 31.0]  # linspace(0, 31, 4).long()
    assert torch.equal(fast, clip)
    with pytest.raises(ValueError, match="alpha=8"):
        model.pathways(torch.zeros(1, 3, 12, 2, 2))
    with pytest.raises(ConfigError, match="num_frames=12"):
        create("slowfast_4x16_r50", num_frames=12)


def test_reduced_raw_clip_reaches_both_pathways():
    """PAS Table 9: halving the clip halves both pathways' frames; a smaller crop shrinks both."""
    model = meta_model("slowfast_4x16_r50")
    seen = {}
    handle = model.blocks[0].register_forward_hook(lambda m, i, out: seen.update(shapes=[o.shape for o in out]))
    with torch.device("meta"), torch.no_grad():
        model(torch.empty(1, 3, 16, 160, 160))
    handle.remove()
    slow, fast = seen["shapes"]
    assert (slow[2:], fast[2:]) == ((2, 40, 40), (16, 40, 40))
    assert gmacs("slowfast_4x16_r50", 16, 224) == pytest.approx(gmacs("slowfast_4x16_r50", 32, 224) / 2, rel=0.01)


def slowfast_widths(model: nn.Module) -> list[tuple[int, int]]:
    """``(slow, fast)`` output widths of the stem and of every conv of every residual block."""
    widths = [tuple(p.conv.out_channels for p in model.blocks[0].multipathway_blocks)]
    for stage in model.blocks[1:5]:
        slow, fast = stage.multipathway_blocks
        for a, b in zip(slow.res_blocks, fast.res_blocks):
            widths += [(getattr(a.branch2, conv).out_channels, getattr(b.branch2, conv).out_channels)
                       for conv in ("conv_a", "conv_b", "conv_c")]
    return widths


@pytest.mark.parametrize("width", [0.5, 1 / 1.4])
def test_slowfast_slow_widths_round_to_the_nearest_integer_and_fast_ones_are_an_eighth(width):
    model = meta_model("slowfast_4x16_r50", width_mult=width)
    full = slowfast_widths(meta_model("slowfast_4x16_r50"))
    assert slowfast_widths(model) == [(round_channels(s, width), round_channels(s, width) // 8) for s, _ in full]
    for stage in model.blocks[1:5]:
        fast = stage.multipathway_blocks[1]
        fusion = stage.multipathway_fusion
        if isinstance(fusion, nn.Module) and hasattr(fusion, "conv_fast_to_slow"):
            assert fusion.conv_fast_to_slow.out_channels == 2 * fast.res_blocks[-1].branch2.conv_c.out_channels
    assert gmacs("slowfast_4x16_r50", 32, 224, width_mult=width) < gmacs("slowfast_4x16_r50", 32, 224) * width**2 * 1.3


def test_slowfast_pas_width_step_keeps_the_stem_at_46_not_48():
    """epsilon_c's 64 / 1.4 = 45.7 rounds to 46 (fast 5), not to a multiple of 8 (48), so the step
    costs about the paper's x0.516 (PAS Table 1), not x0.537."""
    assert slowfast_widths(meta_model("slowfast_4x16_r50", width_mult=1 / 1.4))[0] == (46, 5)
    ratio = gmacs("slowfast_4x16_r50", 32, 256, width_mult=1 / 1.4) / gmacs("slowfast_4x16_r50", 32, 256)
    assert ratio == pytest.approx(0.516, abs=0.01)


def test_slowfast_full_width_is_the_published_one_and_narrow_widths_keep_a_fast_channel():
    full = slowfast_widths(meta_model("slowfast_4x16_r50"))
    assert full[0] == (64, 8) and full[1:4] == [(64, 8), (64, 8), (256, 32)] and full[-1] == (2048, 256)
    assert all(fast >= 1 and slow >= 8 for slow, fast in slowfast_widths(meta_model("slowfast_4x16_r50", width_mult=0.05)))


@pytest.mark.parametrize("width", [0.5, 1 / 1.4])
def test_x3d_width_uses_divisor_8(width):
    model = meta_model("x3d_m", width_mult=width)
    assert model.blocks[0].conv.conv_t.out_channels == round_channels(24, width, 8)
    for stage, base in zip(model.blocks[1:5], (24, 48, 96, 192)):
        out = stage.res_blocks[0].branch2.conv_c.out_channels
        assert out == round_channels(base, width, 8) and out % 8 == 0
        assert stage.res_blocks[0].branch2.conv_a.out_channels == int(2.25 * out)
    assert model.blocks[5].pool.post_conv.out_channels == round_channels(2048, width, 8)


def test_depth_multiplier_rounds_blocks_up():
    slowfast = meta_model("slowfast_4x16_r50", depth_mult=0.5)
    assert [len(s.multipathway_blocks[p].res_blocks) for s in slowfast.blocks[1:5] for p in (0, 1)] == [
        2, 2, 2, 2, 3, 3, 2, 2,
    ]
    x3d = meta_model("x3d_m", depth_mult=0.5)
    assert [len(s.res_blocks) for s in x3d.blocks[1:5]] == [math.ceil(d / 2) for d in (3, 5, 11, 7)]
    assert [len(s.res_blocks) for s in meta_model("x3d_l").blocks[1:5]] == [5, 10, 25, 15]


@pytest.mark.parametrize(
    ("name", "overrides", "frames"),
    [
        ("slowfast_4x16_r50", {"width_mult": 0.25, "depth_mult": 0.34}, 8),
        ("slowfast_8x8_r50", {"width_mult": 0.25, "depth_mult": 0.34}, 8),
        ("x3d_xs", {}, 4),
        ("x3d_l", {"width_mult": 0.5, "depth_mult": 0.2}, 3),
    ],
)
def test_forward_backward_on_a_tiny_clip(name, overrides, frames):
    torch.manual_seed(0)
    model = create(name, num_classes=5, **overrides)
    x = torch.randn(2, 3, frames, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(x)), model(x))


def test_reset_classifier_changes_the_class_count():
    torch.manual_seed(0)
    for name in ("slowfast_4x16_r50", "x3d_xs"):
        model = create(name, width_mult=0.25, depth_mult=0.34)
        model.reset_classifier(7)
        assert model.spec.num_classes == 7
        assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 7)


def test_heads_equal_pytorchvideo_fixed_pooling_at_the_standard_input():
    torch.manual_seed(0)
    x3d = create("x3d_xs", width_mult=0.5).eval()
    head = x3d.blocks[5]
    feats = torch.randn(2, head.pool.pre_conv.in_channels, 16, 7, 7)
    pool = head.pool
    ptv = pool.pre_act(pool.pre_norm(pool.pre_conv(feats)))
    ptv = pool.post_act(pool.post_conv(nn.AvgPool3d((16, 7, 7), stride=1)(ptv)))
    ptv = head.proj(ptv.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3).mean(dim=(2, 3, 4))
    with torch.no_grad():
        assert torch.allclose(x3d.forward_head(feats), ptv, atol=1e-5)

    slowfast = create("slowfast_4x16_r50", width_mult=0.25, depth_mult=0.34).eval()
    widths = [p.res_blocks[-1].branch2.conv_c.out_channels for p in slowfast.blocks[4].multipathway_blocks]
    slow = torch.randn(2, widths[0], 4, 7, 7)
    fast = torch.randn(2, widths[1], 32, 7, 7)
    pooled = torch.cat([nn.AvgPool3d((4, 7, 7), stride=1)(slow), nn.AvgPool3d((32, 7, 7), stride=1)(fast)], dim=1)
    proj = slowfast.blocks[6].proj
    expected = proj(pooled.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3).mean(dim=(2, 3, 4))
    with torch.no_grad():
        assert torch.allclose(slowfast.forward_head([slow, fast]), expected, atol=1e-5)
