"""PAS reduction operators: arithmetic, cumulative factors, cost ratios and pruned hypotheses."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from effvid.cost.static import count_spec
from effvid.errors import ConfigError
from effvid.methods.pas.operators import (
    InfeasibleReduction,
    Pruned,
    Reduced,
    apply_operator,
    apply_sequence,
    epsilon_c,
    epsilon_f,
    epsilon_l,
    epsilon_s,
    epsilon_t,
    nearest_accepted,
    parse_operators,
    runs_at_crop,
)
from effvid.models import ArchSpec, list_models, round_channels, round_depth
from effvid.models.base import ModelBase
from effvid.models.registry import default_spec, get_entry, register_model

TINY = "optest_tiny3d"
TINY_TWO_PATH = "optest_tiny_twopath"


class TinyNet(ModelBase):
    """Stem (stride 4) and two stages (stride 2 each) of conv blocks: total spatial stride 16."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        width = [round_channels(c, spec.width_mult, 4) for c in (8, 16)]
        self.stem = nn.Conv3d(3, width[0], (1, 3, 3), stride=(1, 4, 4), padding=(0, 1, 1))
        layers, cin = [], width[0]
        for cout, blocks in zip(width, (2, 2)):
            for i in range(round_depth(blocks, spec.depth_mult)):
                layers.append(nn.Conv3d(cin, cout, 3, stride=(1, 2, 2) if i == 0 else 1, padding=1))
                cin = cout
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean((2, 3, 4)))


SPACE_TO_DEPTH = "optest_space_to_depth"


class SpaceToDepthNet(TinyNet):
    """TinyNet behind a 4 x 4 space-to-depth stem: it runs only on crops divisible by 4."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t, h // 4, 4, w // 4, 4).mean((4, 6))
        return super().forward_features(x)


if TINY not in list_models():
    register_model(TINY, default_spec=ArchSpec(TINY, num_classes=5, num_frames=8, frame_stride=2, crop_size=64,
                                               train_resize=(72, 90), test_resize=72),
                   kind="3d", spatial_stride=16)(TinyNet)
    register_model(TINY_TWO_PATH, default_spec=ArchSpec(TINY_TWO_PATH, num_classes=5, num_frames=32, frame_stride=2,
                                                        crop_size=64, family={"alpha": 8}),
                   kind="slowfast", spatial_stride=16, min_frames=8)(TinyNet)
    register_model(SPACE_TO_DEPTH, default_spec=ArchSpec(SPACE_TO_DEPTH, num_classes=5, num_frames=4, crop_size=64),
                   kind="3d", spatial_stride=64)(SpaceToDepthNet)


def test_epsilon_s_scales_crop_and_resizes_to_the_nearest_integer():
    spec = default_spec(TINY, crop_size=112, train_resize=(128, 160), test_resize=128)
    out = epsilon_s(spec)
    assert (out.crop_size, out.train_resize, out.test_resize) == (80, (91, 114), 91)
    assert out.test_crop_size is None and out.num_frames == spec.num_frames
    crops = [224]
    for _ in range(4):
        crops.append(epsilon_s(default_spec(TINY, crop_size=crops[-1])).crop_size)
    assert crops == [224, 160, 114, 81, 58]  # Table 9's 224 / gamma-bar_s, within a pixel
    assert all(abs(crop - 224 / 1.4**k) < 1 for k, crop in enumerate(crops))


def test_epsilon_s_on_the_demo_base_halves_the_pixels():
    demo = default_spec(TINY, crop_size=48, train_resize=(56, 56), test_resize=56)
    out = epsilon_s(demo)
    assert (out.crop_size, out.train_resize, out.test_resize) == (34, (40, 40), 40)
    assert (out.crop_size / demo.crop_size) ** 2 == pytest.approx(1 / 1.4**2, rel=0.02)


def test_epsilon_s_scales_the_test_crop_with_the_training_crop():
    spec = default_spec(TINY, crop_size=224, test_crop_size=256, train_resize=(256, 320), test_resize=256)
    once = epsilon_s(spec)
    assert (once.crop_size, once.test_crop_size, once.train_resize, once.test_resize) == (160, 183, (183, 229), 183)
    twice = epsilon_s(once)
    assert (twice.crop_size, twice.test_crop, twice.test_resize) == (114, 131, 131)  # 256 / 1.96 = 130.6


def test_crops_round_to_the_nearest_one_the_network_accepts():
    assert nearest_accepted(34.29, 48, lambda crop: True) == 34
    assert nearest_accepted(34.29, 48, lambda crop: crop % 8 == 0) == 32
    assert nearest_accepted(2.5, 10, lambda crop: True) == 3  # a tie goes to the larger crop
    assert nearest_accepted(3.0, 10, lambda crop: False) is None
    assert epsilon_s(default_spec(TINY, crop_size=48), accepts=lambda crop: crop % 8 == 0).crop_size == 32
    with pytest.raises(InfeasibleReduction, match="runs at no crop"):
        epsilon_s(default_spec(TINY, crop_size=48), accepts=lambda crop: False)


def test_apply_operator_gives_a_network_the_nearest_crop_it_runs_at():
    result = apply_operator(Reduced.base(default_spec(SPACE_TO_DEPTH, crop_size=128)), "s")
    assert isinstance(result, Reduced) and result.spec.crop_size == 92  # 128 / 1.4 = 91.4; 91 is not a multiple of 4
    assert runs_at_crop(result.spec, 92) and not runs_at_crop(result.spec, 91)


def test_every_registered_family_runs_at_any_integer_crop_above_its_stride():
    for name in list_models():
        if name.startswith("optest_"):
            continue
        stride = get_entry(name).spatial_stride
        assert runs_at_crop(default_spec(name), 2 * stride + 3), name


def test_epsilon_t_keeps_stride_and_halves_span_epsilon_f_keeps_span():
    spec = default_spec(TINY, num_frames=16, frame_stride=2)
    t, f = epsilon_t(spec), epsilon_f(spec)
    assert (t.num_frames, t.frame_stride, t.clip_span) == (8, 2, 16)
    assert (f.num_frames, f.frame_stride, f.clip_span) == (8, 4, 32)
    assert epsilon_t(default_spec(TINY, num_frames=13)).num_frames == 6  # whole frames only


def test_epsilon_c_and_l_divide_the_multipliers_with_configurable_gammas():
    spec = default_spec(TINY)
    assert epsilon_c(spec).width_mult == pytest.approx(1 / 1.4)
    assert epsilon_l(spec).depth_mult == pytest.approx(0.5)
    assert epsilon_c(spec, 2.0).width_mult == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="gamma_l"):
        epsilon_l(spec, 1.0)


def test_cumulative_factors_and_serialisation():
    results = apply_sequence(default_spec(TINY), "s,c,s,t")
    last = results[-1]
    assert isinstance(last, Reduced)
    assert last.operators == ("s", "c", "s", "t")
    assert dict(last.factors) == pytest.approx({"s": 1.96, "t": 2.0, "f": 1.0, "c": 1.4, "l": 1.0})
    assert Reduced.from_dict(json.loads(json.dumps(last.to_dict()))) == last
    custom = apply_sequence(default_spec(TINY), ["t"], gammas={"t": 4})[0]
    assert custom.spec.num_frames == 2 and custom.factors["t"] == 4


def test_pruned_hypotheses_say_why():
    base = Reduced.base(default_spec(TINY, num_frames=1, crop_size=1))
    for op, reason in [("t", "fewer than one frame"), ("f", "fewer than one frame"), ("s", "no reduction")]:
        result = apply_operator(base, op)
        assert isinstance(result, Pruned) and reason in result.reason and result.parent is base
    stride = apply_operator(Reduced.base(default_spec(TINY, crop_size=16)), "s")
    assert isinstance(stride, Pruned) and "spatial stride 16" in stride.reason
    steps = apply_sequence(default_spec(TINY), "l,l")
    assert isinstance(steps[0], Reduced) and isinstance(steps[1], Pruned)
    assert "no layer left" in steps[1].reason
    narrow = apply_sequence(default_spec(TINY), "c,c,c,c,c")
    assert any(isinstance(r, Pruned) and "narrowest" in r.reason for r in narrow)


def test_a_pruned_step_is_skipped_and_the_sequence_goes_on():
    steps = apply_sequence(default_spec(TINY), "l,l,s")
    assert isinstance(steps[2], Reduced)
    assert steps[2].operators == ("l", "s") and steps[2].spec.depth_mult == 0.5


def test_two_pathway_models_keep_whole_slow_frames():
    spec = default_spec(TINY_TWO_PATH)  # 32 fast frames, alpha 8
    steps = apply_sequence(spec, "t,f,t")
    assert [s.spec.num_frames for s in steps[:2]] == [16, 8]
    assert isinstance(steps[2], Pruned) and "slow-pathway" in steps[2].reason
    odd = apply_operator(Reduced.base(spec.replace(num_frames=40)), "t")
    assert odd.spec.num_frames == 16  # 20 rounded down to a multiple of alpha


def test_unknown_operator_is_a_config_error():
    assert parse_operators(" s, t ,c") == ("s", "t", "c")
    with pytest.raises(ConfigError, match="x"):
        parse_operators("s,x")


@pytest.mark.skipif("r2plus1d_18" not in list_models(), reason="r2plus1d_18 not registered yet")
@pytest.mark.parametrize("op, ratio, tol", [("s", 1 / 1.96, 0.01), ("t", 0.5, 0.01), ("f", 0.5, 0.01),
                                            ("c", 1 / 1.96, 0.04), ("l", 0.5, 0.06)])
def test_r2plus1d_cost_ratios(op, ratio, tol):
    base = default_spec("r2plus1d_18")
    reduced = apply_operator(Reduced.base(base), op)
    assert isinstance(reduced, Reduced)
    assert count_spec(reduced.spec).gmacs / count_spec(base).gmacs == pytest.approx(ratio, abs=tol)


@pytest.mark.skipif("slowfast_4x16_r50" not in list_models(), reason="slowfast_4x16_r50 not registered yet")
def test_slowfast_after_a_sequence_matches_table_9():
    base = default_spec("slowfast_4x16_r50")  # train crop 224, test crop 256
    *_, before_l, result = apply_sequence(base, "s,t,c,f,l")
    g = result.factors
    spec = result.spec
    assert spec.crop_size == 224 / g["s"]
    assert spec.test_crop == round(256 / g["s"])  # the test crop is reduced alike
    assert spec.num_frames == 32 / (g["t"] * g["f"])  # fast pathway
    assert spec.num_frames // spec.family["alpha"] == 4 / (g["t"] * g["f"])  # slow pathway
    assert spec.num_frames * base.frame_stride == 64 / (g["t"] * g["f"])  # raw clip at the base stride
    assert spec.width_mult == pytest.approx(1 / g["c"]) and spec.depth_mult == pytest.approx(1 / g["l"])
    with torch.device("meta"):
        from effvid.models import create_from_spec

        model = create_from_spec(spec)
    conv_out = sorted({m.out_channels for m in model.modules() if isinstance(m, nn.Conv3d)})
    assert round_channels(64, 1 / g["c"]) in conv_out  # slow conv1 64/gc, to the nearest integer
    base_gmacs, before_l_gmacs = count_spec(base).gmacs, count_spec(before_l.spec).gmacs
    assert math.isclose(before_l_gmacs / base_gmacs, 1 / (g["s"] ** 2 * g["t"] * g["f"] * g["c"] ** 2), rel_tol=0.15)
    assert 0.6 < count_spec(spec).gmacs / before_l_gmacs < 0.75  # 3,4,6,3 blocks halve to 2,2,3,2: l saves less
