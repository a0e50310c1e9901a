"""D-STEP's report through ``effvid analyze dstep``: the Figure-3 maps and the per-block channel
decision rates of an untrained (decisive) checkpoint, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dstep_helpers import dstep_model

from effvid.cli import main
from effvid.engine.checkpoint import save_checkpoint
from effvid.methods.dstep.report import computation_maps, tile_computation
from effvid.models import create_from_spec, default_spec
from effvid.report.plots import plot_channel_decisions, plot_computation_maps


@pytest.fixture(scope="module")
def dstep_checkpoint(synth_micro, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = dstep_model("tsm_r18", frames=4).eval()
    stem = tmp_path_factory.mktemp("dstep-report") / "dstep"
    save_checkpoint(stem, model=model, spec=model.spec, class_names=list(synth_micro.class_names))
    return stem


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_analyze_dstep_writes_maps_and_decision_rates_that_sum_to_one(dstep_checkpoint, synth_micro, tmp_path,
                                                                      capsys):
    val = synth_micro.annotations["val"]
    out = tmp_path / "report"
    capsys.readouterr()
    assert main(["analyze", "dstep", str(dstep_checkpoint), "--data", str(val), "--out", str(out), "--maps", "2",
                 "--max-videos", "6", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["maps"]) == 2 and all(Path(m["png"]).is_file() for m in report["maps"])
    assert Path(report["rates_png"]).is_file() and Path(report["json"]).is_file()
    assert json.loads(Path(report["json"]).read_text())["rates"] == report["rates"]
    rates = report["rates"]
    assert rates["num_clips"] == 6 and len(rates["blocks"]) == 8
    for row in rates["blocks"]:
        assert row["skip"] + row["reuse"] + row["compute"] == pytest.approx(1.0, abs=1e-9)
        assert 0.0 <= row["spatial_density"] <= 1.0
    assert any(row["skip"] > 0 for row in rates["blocks"]) and any(row["reuse"] > 0 for row in rates["blocks"])
    assert rates["gmacs"]["min"] <= rates["gmacs"]["mean"] <= rates["gmacs"]["max"] <= rates["dense_gmacs"]
    for figure in report["maps"]:
        assert len(figure["frame_computation"]) == 4 and all(0.0 <= c <= 1.0 for c in figure["frame_computation"])
        assert figure["prediction"] in synth_micro.class_names

    video = synth_micro.root / val.read_text().split()[0]
    assert main(["analyze", "dstep", str(dstep_checkpoint), "--video", str(video), "--out", str(tmp_path / "one"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "one" / f"map_00_{video.stem}.png").is_file()
    assert "compute" in capsys.readouterr().out


def test_the_computation_map_is_the_masked_share_of_dense_work_averaged_over_blocks(synth_micro):
    model = dstep_model("tsm_r18", frames=4).eval()
    with torch.no_grad():
        model.forward_output(torch.randn(1, 3, 4, 32, 32))
        maps = computation_maps(model, (32, 32))
    assert maps.shape == (4, 32, 32) and float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    for block in model.blocks():
        share = tile_computation(block)
        assert share.shape == block.last.mask.shape
        assert torch.all(share[block.last.mask == 0] == 0)
    with torch.no_grad():  # every tile on, every channel computed: the whole dense work everywhere
        for block in model.blocks():
            block.mask.conv.weight.zero_()
            block.mask.conv.bias.fill_(5.0)
            block.policy.fc2.weight.zero_()
            block.policy.fc2.bias.view(block.policy.channels, -1)[:, -1] = 50.0
        model.forward_output(torch.randn(1, 3, 4, 32, 32))
        assert torch.allclose(computation_maps(model, (32, 32)), torch.ones(4, 32, 32, dtype=torch.float64))


def test_the_plots_reject_shapes_that_do_not_match(tmp_path):
    frames = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="one"):
        plot_computation_maps(frames, np.zeros((2, 4, 4)), tmp_path / "m.png")
    with pytest.raises(ValueError, match="blocks, actions"):
        plot_channel_decisions([[0.5, 0.5]], ["layer1.0"], ["skip", "reuse", "compute"], tmp_path / "r.png")


def test_bad_input_is_one_line_and_exit_2(dstep_checkpoint, synth_micro, tmp_path, capsys):
    val = str(synth_micro.annotations["val"])
    plain = create_from_spec(default_spec("tsm_r18", num_classes=16, crop_size=32, num_frames=4, width_mult=0.25))
    save_checkpoint(tmp_path / "tsm", model=plain, spec=plain.spec)
    capsys.readouterr()
    assert main(["analyze", "dstep", str(tmp_path / "tsm"), "--data", val, "--out", str(tmp_path / "a")]) == 2
    assert "not a D-STEP checkpoint" in _one_error_line(capsys)
    assert main(["analyze", "dstep", str(tmp_path / "missing"), "--data", val, "--out", str(tmp_path / "b")]) == 2
    assert "missing" in _one_error_line(capsys)
    assert main(["analyze", "dstep", str(dstep_checkpoint), "--video", str(tmp_path / "nope.mp4"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "nope.mp4" in _one_error_line(capsys)
    assert main(["analyze", "dstep", str(dstep_checkpoint), "--out", str(tmp_path / "d")]) == 2
    assert "--data" in _one_error_line(capsys)
