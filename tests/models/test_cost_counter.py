"""The cost counter: hand-checked MACs, the reference table of flops.md, meta-device counting."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from effvid.commands import flops as flops_command
from effvid.commands import models as models_command
from effvid.cost.static import BN_MACS_PER_ELEMENT, count_cost, count_spec
from effvid.engine.checkpoint import save_checkpoint
from effvid.errors import CheckpointError, ConfigError
from effvid.models import default_spec, list_models
from handcounted import BN_ELEMENTS, CONV_MACS, LINEAR_MACS, PARAMS, ConvLinear


def test_hand_checked_conv_and_linear_macs_and_params():
    report = count_cost(ConvLinear(), (3, 4, 16, 16))
    assert report.gmacs * 1e9 == pytest.approx(CONV_MACS + LINEAR_MACS)
    assert report.params == PARAMS
    assert report.input_shape == (1, 3, 4, 16, 16)
    assert report.model == "ConvLinear"


def test_batch_norm_counted_only_when_asked():
    model = ConvLinear()
    plain = count_cost(model, (3, 4, 16, 16))
    with_bn = count_cost(model, (3, 4, 16, 16), with_bn=True)
    assert (with_bn.gmacs - plain.gmacs) * 1e9 == pytest.approx(BN_MACS_PER_ELEMENT * BN_ELEMENTS)


def test_cost_is_per_view_whatever_the_batch():
    model = ConvLinear()
    batched = count_cost(model, (4, 3, 4, 16, 16))
    assert batched.gmacs == pytest.approx(count_cost(model, (3, 4, 16, 16)).gmacs)
    assert batched.input_shape == (1, 3, 4, 16, 16)


def test_per_layer_rows_name_modules_and_sum_to_total():
    report = count_cost(ConvLinear(), (3, 4, 16, 16), per_layer=True, with_bn=True)
    by_module = {row["module"]: row for row in report.layers}
    assert set(by_module) == {"conv", "bn", "fc"}
    assert by_module["conv"]["op"] == "convolution"
    assert by_module["conv"]["gmacs"] * 1e9 == pytest.approx(CONV_MACS)
    assert sum(row["gmacs"] for row in report.layers) == pytest.approx(report.gmacs)


def test_counting_leaves_the_model_untouched_and_allocates_nothing():
    model = ConvLinear().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_cost(model, (3, 64, 512, 512))  # a large input: only meta tensors are made
    assert model.training
    assert all(torch.equal(before[k], v) and v.device.type == "cpu" for k, v in model.state_dict().items())


def test_a_model_without_spec_needs_a_shape():
    with pytest.raises(ConfigError, match="input_shape"):
        count_cost(ConvLinear())


# (name, spec overrides, with_bn, reference GMACs, reference params or None): flops.md
REFERENCE = [
    ("r2plus1d_18", {}, False, 40.519, 31_505_325),
    ("r3d_18", {}, False, 40.697, 33_371_472),
    ("slowfast_4x16_r50", {"num_frames": 32, "crop_size": 224, "test_crop_size": None}, False, 27.64, 34_480_000),
    ("slowfast_4x16_r50", {"num_frames": 32, "crop_size": 256}, False, 36.10, 34_480_000),
    ("slowfast_4x16_r50", {"num_frames": 32, "crop_size": 256}, True, 36.69, None),
    ("slowfast_8x8_r50", {"num_frames": 32, "crop_size": 256}, False, 65.71, 34_570_000),
    ("x3d_m", {"num_frames": 16, "crop_size": 224}, False, 4.73, 3_790_000),
    ("x3d_m", {"num_frames": 16, "crop_size": 256}, False, 6.186, None),
    ("x3d_m", {"num_frames": 16, "crop_size": 256}, True, 6.72, None),
    ("x3d_xs", {"num_frames": 4, "crop_size": 160}, False, 0.605, None),
    ("x3d_s", {"num_frames": 13, "crop_size": 160}, False, 1.963, None),
    ("x3d_l", {"num_frames": 16, "crop_size": 312}, False, 18.37, 6_150_000),
    ("resnet18", {"num_frames": 1, "crop_size": 224, "num_classes": 1000}, False, 1.814, 11_689_512),
    ("resnet34", {"num_frames": 1, "crop_size": 224, "num_classes": 1000}, False, 3.664, 21_797_672),
    ("resnet50", {"num_frames": 1, "crop_size": 224, "num_classes": 1000}, False, 4.089, 25_557_032),
    ("mobilenet_v2", {"num_frames": 1, "crop_size": 224, "num_classes": 1000}, False, 0.301, 3_504_872),
    ("efficientnet_b0", {"num_frames": 1, "crop_size": 224, "num_classes": 1000}, False, 0.386, 5_288_548),
    ("efficientnet_b1", {"num_frames": 1, "crop_size": 240, "num_classes": 1000}, False, 0.687, 7_794_184),
    ("efficientnet_b2", {"num_frames": 1, "crop_size": 288, "num_classes": 1000}, False, 1.088, 9_109_994),
    ("efficientnet_b3", {"num_frames": 1, "crop_size": 300, "num_classes": 1000}, False, 1.827, 12_233_232),
]


@pytest.mark.parametrize(
    "name, overrides, with_bn, gmacs, params",
    REFERENCE,
    ids=[f"{r[0]}-{r[1].get('crop_size', 'default')}{'-bn' if r[2] else ''}" for r in REFERENCE],
)
def test_reference_costs_within_half_a_percent(name, overrides, with_bn, gmacs, params):
    if name not in list_models():
        pytest.skip(f"{name} is not registered yet")
    report = count_spec(default_spec(name, **overrides), with_bn=with_bn)
    assert report.gmacs == pytest.approx(gmacs, rel=5e-3)
    if params is not None:
        assert report.params == pytest.approx(params, rel=5e-3)
    if name == "r2plus1d_18":
        assert report.params == params  # exactly torchvision's num_params
    assert report.input_shape == (1, 3, overrides.get("num_frames", 16), overrides.get("crop_size", 112), overrides.get("crop_size", 112))


@pytest.mark.parametrize("video, frame", [("tsn_r50", "resnet50"), ("tsm_r50", "resnet50"), ("tsn_r18", "resnet18"), ("tsm_r18", "resnet18")])
def test_frame_models_cost_frames_times_the_per_frame_cost(video, frame):
    if not {video, frame} <= set(list_models()):
        pytest.skip(f"{video} or {frame} is not registered yet")
    clip = count_spec(default_spec(video, num_frames=8, crop_size=224, num_classes=400))
    single = count_spec(default_spec(frame, num_frames=1, crop_size=224, num_classes=400))
    assert clip.gmacs == pytest.approx(8 * single.gmacs, rel=1e-6)


def run_command(argv: list[str], capsys) -> dict:
    """Run an effvid flops/models command with --json and return its one JSON object."""
    parser = argparse.ArgumentParser(prog="effvid")
    sub = parser.add_subparsers()
    flops_command.register(sub)
    models_command.register(sub)
    args = parser.parse_args([*argv, "--json"])
    assert args.run(args) == 0
    return json.loads(capsys.readouterr().out)


needs_r2plus1d = pytest.mark.skipif("r2plus1d_18" not in list_models(), reason="r2plus1d_18 not registered yet")


@needs_r2plus1d
def test_flops_command_json(capsys):
    out = run_command(["flops", "r2plus1d_18"], capsys)
    assert out["model"] == "r2plus1d_18" and out["input_shape"] == [1, 3, 16, 112, 112]
    assert out["gmacs"] == pytest.approx(40.519, rel=1e-4) and out["params"] == 31_505_325
    small = run_command(["flops", "r2plus1d_18", "--frames", "8", "--size", "80", "--classes", "10"], capsys)
    assert small["input_shape"] == [1, 3, 8, 80, 80] and small["params"] < out["params"]


@needs_r2plus1d
def test_flops_command_prices_a_reduction_sequence(capsys):
    out = run_command(["flops", "r2plus1d_18", "--reduce", "s,t,c"], capsys)
    steps = out["reduce"]
    assert [s["operator"] for s in steps] == ["s", "t", "c"] and not any(s["pruned"] for s in steps)
    assert [s["input_shape"] for s in steps] == [[1, 3, 16, 80, 80], [1, 3, 8, 80, 80], [1, 3, 8, 80, 80]]
    assert steps[-1]["factors"] == pytest.approx({"s": 1.4, "t": 2.0, "f": 1.0, "c": 1.4, "l": 1.0})
    assert steps[-1]["spec"]["width_mult"] == pytest.approx(1 / 1.4)
    gmacs = [out["gmacs"]] + [s["gmacs"] for s in steps]
    for before, after in zip(gmacs, gmacs[1:]):
        assert 0.45 < after / before < 0.56  # every PAS step roughly halves the cost
    pruned = run_command(["flops", "r2plus1d_18", "--reduce", "l,l"], capsys)["reduce"][1]
    assert pruned["pruned"] and "no layer left" in pruned["reason"]


def test_flops_command_prices_the_test_crop_and_size_sets_both_crops(capsys):
    out = run_command(["flops", "slowfast_4x16_r50"], capsys)
    assert out["input_shape"] == [1, 3, 32, 256, 256] and out["spec"]["crop_size"] == 224
    assert out["gmacs"] == pytest.approx(36.10, rel=5e-3)
    small = run_command(["flops", "slowfast_4x16_r50", "--size", "224"], capsys)
    assert small["input_shape"] == [1, 3, 32, 224, 224] and small["gmacs"] == pytest.approx(27.64, rel=5e-3)


@needs_r2plus1d
def test_flops_command_reads_a_checkpoint_sidecar(tmp_path, capsys):
    spec = default_spec("r2plus1d_18", num_frames=8, num_classes=10)
    save_checkpoint(tmp_path / "run", model={"w": torch.zeros(1)}, spec=spec)
    out = run_command(["flops", str(tmp_path / "run.safetensors")], capsys)
    assert out["input_shape"] == [1, 3, 8, 112, 112] and out["spec"]["num_classes"] == 10
    assert run_command(["flops", str(tmp_path / "run"), "--size", "80"], capsys)["input_shape"] == [1, 3, 8, 80, 80]
    with pytest.raises(CheckpointError, match="other"):
        run_command(["flops", str(tmp_path / "other.safetensors")], capsys)
    with pytest.raises(ConfigError, match="known models"):
        run_command(["flops", "no_such_model"], capsys)


def test_models_command_lists_every_registered_model(capsys):
    rows = run_command(["models"], capsys)["models"]
    assert [row["name"] for row in rows] == list_models()
    assert all(row["gmacs"] > 0 and row["params"] > 0 and len(row["input_shape"]) == 5 for row in rows)
    by_name = {row["name"]: row for row in rows}
    if "r2plus1d_18" in by_name:
        assert by_name["r2plus1d_18"]["input_shape"] == [1, 3, 16, 112, 112]
        assert by_name["r2plus1d_18"]["gmacs"] == pytest.approx(40.519, rel=1e-4)
