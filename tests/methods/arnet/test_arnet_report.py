"""AR-Net's reports: the uninformative stretches of SynthActions found again, the Figure-4 strip
and the per-class action usage through ``effvid analyze decisions``, and its one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from effvid.cli import main
from effvid.data.annotations import VideoRecord, load_annotations
from effvid.engine.checkpoint import save_checkpoint
from effvid.methods.arnet.report import SynthStretches
from effvid.models import create_from_spec, default_spec
from effvid.report.plots import plot_action_usage, plot_decision_strip
from effvid.spec import MethodSpec

SETTINGS = {"branches": [{"name": "resnet18", "resolution": 32, "width_mult": 0.25},
                         {"name": "resnet18", "resolution": 24, "width_mult": 0.25, "depth_mult": 0.5}],
            "policy": {"resolution": 16, "width_mult": 0.25, "hidden": 32}}
FRAMES = 8


def _spec():
    return default_spec("resnet18", num_classes=16, crop_size=32, num_frames=FRAMES, width_mult=0.25,
                        train_resize=(32, 32), test_resize=32, method=MethodSpec("arnet", SETTINGS))


def _decisive(model):
    """An untrained policy that makes varied decisions (as in test_arnet.py): BatchNorm statistics
    estimated on noise and a sharper action layer."""
    norms = [m for m in model.policy.extractor.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None
    with torch.no_grad():
        model.policy.train().features(torch.randn(32, 3, 16, 16))
        model.policy.actions.weight.normal_(0.0, 1.0)
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


@pytest.fixture(scope="module")
def arnet_checkpoint(synth_micro, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = _decisive(create_from_spec(_spec()))
    stem = tmp_path_factory.mktemp("arnet-report") / "arnet"
    save_checkpoint(stem, model=model, spec=model.spec, class_names=list(synth_micro.class_names))
    return stem


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_the_stretches_of_synthactions_are_found_again_as_one_run_of_12_to_25_percent(synth_micro):
    records = load_annotations(synth_micro.annotations["val"]).records
    masks = [SynthStretches().stretch(record) for record in records]
    assert all(mask is not None and mask.dtype == bool for mask in masks)
    with_stretch = [mask for mask in masks if mask.any()]
    assert with_stretch, "seed 0 gives the micro val split at least one stretch"
    for mask in with_stretch:
        inside = np.flatnonzero(mask)
        assert np.array_equal(inside, np.arange(inside[0], inside[-1] + 1))  # one contiguous run
        length = len(mask)
        assert max(1, round(0.12 * length)) - 1 <= len(inside) <= math.ceil(0.25 * length)
    assert SynthStretches().stretch(VideoRecord(path="/elsewhere/a/b/val00001_000000_000001.mp4", label=0,
                                                video_id="x")) is None  # no SynthActions manifest there


def test_analyze_decisions_writes_strips_usage_png_and_json_with_the_stretch_split(arnet_checkpoint, synth_micro,
                                                                                tmp_path, capsys):
    val = synth_micro.annotations["val"]
    out = tmp_path / "report"
    assert main(["analyze", "decisions", str(arnet_checkpoint), "--data", str(val), "--out", str(out),
                 "--strips", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    usage = json.loads((out / "usage.json").read_text())
    assert usage == report["usage"]
    names = usage["action_names"]
    assert names == ["resnet18@32", "resnet18@24", "mobilenet_v2@16", "skip1", "skip2", "skip4"]
    assert usage["num_videos"] == 16 and usage["frames_per_video"] == FRAMES

    assert len(report["strips"]) == 2
    for strip in report["strips"]:
        assert Path(strip["png"]).is_file() and Path(strip["png"]).parent == out
        assert len(strip["actions"]) == FRAMES and set(strip["actions"]) <= set(names)
        assert len(strip["in_stretch"]) == FRAMES
    assert any(report["strips"][0]["in_stretch"])  # a video with a stretch is drawn first
    assert Path(report["usage_png"]).is_file()

    rows = [usage["overall"], *usage["per_class"]]
    assert len(usage["per_class"]) == 16 and all(row["videos"] == 1 for row in usage["per_class"])
    for row in rows:
        assert sum(row["rates"].values()) == pytest.approx(1.0)
        skipped = sum(rate for name, rate in row["rates"].items() if name.startswith("skip"))
        assert row["skip"] == pytest.approx(skipped)
        assert row["low_resolution"] == pytest.approx(row["rates"]["resnet18@24"] + row["rates"]["mobilenet_v2@16"])
    assert usage["overall"]["frames"] == 16 * FRAMES

    split = usage["uninformative"]
    assert split["known_videos"] == 16 and split["videos_with_stretch"] >= 1
    assert split["stretch"]["frames"] > 0 and split["stretch"]["frames"] + split["elsewhere"]["frames"] == 16 * FRAMES
    for name in ("stretch", "elsewhere"):
        assert sum(split[name]["rates"].values()) == pytest.approx(1.0)
        assert 0.0 <= split[name]["skip"] <= 1.0


def test_a_named_video_gets_its_strip_and_the_summary_goes_to_stdout(arnet_checkpoint, synth_micro, tmp_path, capsys):
    video = load_annotations(synth_micro.annotations["val"]).records[3].path
    out = tmp_path / "one"
    assert main(["analyze", "decisions", str(arnet_checkpoint), "--data", str(synth_micro.annotations["val"]),
                 "--video", video, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["strip_00_" + Path(video).stem + ".png", "usage.png"]
    assert "16 videos x 8 frames" in captured.out and "stretch" in captured.out and "elsewhere" in captured.out


def test_a_checkpoint_that_is_not_arnet_or_a_missing_file_is_one_line_and_exit_2(arnet_checkpoint, synth_micro,
                                                                             tmp_path, capsys):
    plain = create_from_spec(default_spec("resnet18", num_classes=16, crop_size=32, num_frames=FRAMES, width_mult=0.25))
    save_checkpoint(tmp_path / "plain", model=plain, spec=plain.spec)
    val = str(synth_micro.annotations["val"])
    assert main(["analyze", "decisions", str(tmp_path / "plain"), "--data", val, "--out", str(tmp_path / "o")]) == 2
    assert "not an AR-Net checkpoint" in _one_error_line(capsys)
    assert main(["analyze", "decisions", str(arnet_checkpoint), "--data", str(tmp_path / "none.txt"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "none.txt" in _one_error_line(capsys)
    assert main(["analyze", "decisions", str(arnet_checkpoint), "--data", val, "--video", str(tmp_path / "gone.mp4"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "gone.mp4" in _one_error_line(capsys)
    assert main(["analyze", "decisions", str(arnet_checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "--data" in _one_error_line(capsys)


def test_the_plots_refuse_labels_or_usage_that_do_not_match(tmp_path):
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="one label per frame"):
        plot_decision_strip(frames, ["skip1"], tmp_path / "s.png", title="t")
    assert plot_decision_strip(frames, ["a@8", "skip1"], tmp_path / "s.png", title="t").is_file()
    with pytest.raises(ValueError, match="usage of shape"):
        plot_action_usage([[0.5, 0.5]], ["c0"], ["a@8", "b@4", "skip1"], tmp_path / "u.png")
    assert plot_action_usage([[0.5, 0.25, 0.25]], ["c0"], ["a@8", "b@4", "skip1"], tmp_path / "u.png").is_file()
