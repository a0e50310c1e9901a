"""VA-RED2's analyses: the redundancy measures on hand-made maps, ``effvid analyze redundancy`` on a
plain network, ``effvid analyze vared2`` on a dynamic one, and their one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from vared2_helpers import randomize_gates, tiny_spec

from effvid.cli import main
from effvid.engine.checkpoint import save_checkpoint
from effvid.methods.vared2.analysis import feature_redundancy, map_similarity
from effvid.models import create_from_spec, default_spec


@pytest.fixture(scope="module")
def checkpoints(synth_micro, tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained R(2+1)D (plain) and its VA-RED2 model with varied gates, for SynthActions' classes."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vared2-analysis")
    names = list(synth_micro.class_names)
    spec = tiny_spec("r2plus1d_18").replace(num_classes=len(names))
    dynamic = create_from_spec(spec)
    randomize_gates(dynamic)
    plain = create_from_spec(spec.replace(method=None))
    for stem, model in (("plain", plain), ("dynamic", dynamic)):
        save_checkpoint(folder / stem, model=model, spec=model.spec, class_names=names)
    return {"plain": folder / "plain", "dynamic": folder / "dynamic"}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_similarity_of_hand_made_maps_follows_the_thesis_rule():
    maps = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    result = map_similarity(maps)
    assert result["cc"] == pytest.approx(-1 / 3) and result["rmse"] == pytest.approx(2 / 3)
    assert result["rp"] == 0.0  # the identical pair correlates, but its RMSE is not above 0.001
    scaled = torch.tensor([[0.0, 1.0, 0.0, 1.0], [0.0, 0.5, 0.0, 0.5], [1.0, 0.0, 0.0, 0.0]])
    result = map_similarity(scaled)
    assert result["rmse"] == pytest.approx((math.sqrt(0.125) + math.sqrt(0.75) + math.sqrt(0.375)) / 3)
    assert result["rp"] == pytest.approx(2 / 3)  # maps 0 and 1: correlation 1, RMSE 0.35
    assert map_similarity(scaled, cc_threshold=1.0)["rp"] == 0.0
    constant = map_similarity(torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert math.isnan(constant["cc"]) and constant["rp"] == 0.0  # a constant map correlates with nothing
    assert map_similarity(torch.ones(1, 4)) is None


def test_a_static_clip_is_redundant_in_time_and_noise_channels_are_not():
    torch.manual_seed(0)
    frame = torch.randn(16, 1, 8, 8)
    feature = frame * torch.linspace(1.0, 2.0, 4).view(1, 4, 1, 1)  # every frame a scaled copy of the first
    result = feature_redundancy(feature)
    assert result["temporal"]["cc"] == pytest.approx(1.0) and result["temporal"]["rp"] == 1.0
    assert abs(result["channel"]["cc"]) < 0.2 and result["channel"]["rp"] == 0.0
    assert feature_redundancy(feature[:, :1])["temporal"] is None  # one frame: no pair along time


def test_analyze_redundancy_reports_every_convolution_as_json_table_and_png(checkpoints, synth_micro, tmp_path,
                                                                         capsys):
    val = str(synth_micro.annotations["val"])
    out = tmp_path / "redundancy"
    assert main(["analyze", "redundancy", str(checkpoints["plain"]), "--data", val, "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "redundancy.json").read_text())
    assert Path(report["png"]).is_file() and report["num_clips"] == 16 and report["model"] == "r2plus1d_18"
    with torch.device("meta"):
        base = create_from_spec(tiny_spec("r2plus1d_18").replace(method=None))
    assert [row["layer"] for row in report["layers"]] == [n for n, m in base.named_modules() if isinstance(m, nn.Conv3d)]
    for row in report["layers"]:
        channels, frames = row["shape"][:2]
        assert (row["temporal"] is None) == (frames == 1)
        for axis in ("temporal", "channel"):
            if row[axis] is not None:
                assert -1.0 <= row[axis]["cc"] <= 1.0 and 0.0 <= row[axis]["rmse"] <= 1.0
                assert 0.0 <= row[axis]["rp"] <= 1.0
    for axis in ("temporal", "channel"):
        summary = report["summary"][axis]
        low, high = summary["range"]["cc"]
        assert low <= summary["most_redundant"]["cc"] == high and summary["least_redundant"]["cc"] == low

    assert main(["analyze", "redundancy", str(checkpoints["plain"]), "--data", val, "--out", str(out),
                 "--max-videos", "2"]) == 0
    table = capsys.readouterr().out
    assert "on 2 clips" in table and "T-CC" in table and "mean over layers" in table
    assert "layer1.0.conv1.0.0" in table


def test_analyze_vared2_plots_ratios_cost_distribution_and_extreme_clips(checkpoints, synth_micro, tmp_path, capsys):
    out = tmp_path / "vared2"
    assert main(["analyze", "vared2", str(checkpoints["dynamic"]), "--data", str(synth_micro.annotations["val"]),
                 "--out", str(out), "--figure-classes", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "vared2.json").read_text())
    for key in ("layer_ratios_png", "cost_distribution_png", "extremes_png"):
        assert Path(report[key]).is_file() and Path(report[key]).parent == out
    assert report["num_clips"] == 16 and len(report["clips"]) == 16
    costs = [clip["gmacs"] for clip in report["clips"]]
    gmacs = report["gmacs"]
    assert gmacs["min"] == min(costs) < gmacs["max"] == max(costs) <= report["dense_gmacs"]
    assert gmacs["mean"] == pytest.approx(sum(costs) / 16)
    for clip in report["clips"]:
        assert clip["fraction_of_base"] == pytest.approx(clip["gmacs"] / report["base_gmacs"])
    layers = report["layers"]
    assert len(layers) == 8 and [row["layer"] for row in report["per_layer"]] == layers
    for row in report["per_layer"]:
        assert all(0.0 <= row[key] <= 1.0 for key in ("temporal_ratio", "channel_ratio", "ratio"))
    assert len({row["channel_ratio"] for row in report["per_layer"]} | {row["temporal_ratio"]
                                                                      for row in report["per_layer"]}) > 1
    assert len(report["per_class"]) == 16 and all(row["clips"] == 1 for row in report["per_class"])
    assert all(len(row["temporal_ratio"]) == len(layers) for row in report["per_class"])
    for row in report["extremes"]:  # one validation clip per class: it is both ends
        assert row["most"] == row["least"] and row["index"] in row["most"]["labels"]


def test_bad_input_is_one_line_and_exit_2(checkpoints, synth_micro, tmp_path, capsys):
    val = str(synth_micro.annotations["val"])
    out = str(tmp_path / "o")
    assert main(["analyze", "vared2", str(checkpoints["plain"]), "--data", val, "--out", out]) == 2
    assert "not a VA-RED2 checkpoint" in _one_error_line(capsys)
    assert main(["analyze", "vared2", str(checkpoints["dynamic"]), "--data", str(tmp_path / "none.txt"),
                 "--out", out]) == 2
    assert "none.txt" in _one_error_line(capsys)
    assert main(["analyze", "redundancy", str(tmp_path / "gone"), "--data", val]) == 2
    assert "gone" in _one_error_line(capsys)
    assert main(["analyze", "redundancy", str(checkpoints["plain"])]) == 2
    assert "--data" in _one_error_line(capsys)
    assert main(["analyze", "redundancy", str(checkpoints["plain"]), "--data", val, "--cc-threshold", "2"]) == 2
    assert "--cc-threshold" in _one_error_line(capsys)
    frames = create_from_spec(default_spec("resnet18", num_classes=16, crop_size=32, num_frames=4, width_mult=0.25))
    save_checkpoint(tmp_path / "frames", model=frames, spec=frames.spec)
    assert main(["analyze", "redundancy", str(tmp_path / "frames"), "--data", val, "--out", out]) == 2
    assert "no 3D convolution" in _one_error_line(capsys)
