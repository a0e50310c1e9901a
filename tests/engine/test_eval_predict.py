"""Evaluation metrics on a model whose answer is known, multi-view averaging, eval/predict through the CLI,
and corrupt or foreign checkpoints rejected with one clear line."""

from __future__ import annotations

import json

import pytest
import torch

from effvid.cli import main
from effvid.data.annotations import load_annotations
from effvid.data.dataset import VideoDataset
from effvid.engine import checkpoint as ckpt
from effvid.engine.evaluate import evaluate
from effvid.models import create_from_spec

FAVOURITE = 3  # the constant model always ranks classes 3, 4, 5, 6, 7 first


@pytest.fixture
def constant_checkpoint(synth_micro, tiny_spec, tmp_path):
    """A checkpoint whose logits ignore the input: fc weight 0, bias falling from class 3 (3, 4, ..., 15, 0, 1, 2)."""
    model = create_from_spec(tiny_spec())
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(-torch.arange(16.0).sub(FAVOURITE).remainder(16))
    stem = tmp_path / "constant"
    ckpt.save_checkpoint(stem, model=model, class_names=synth_micro.class_names,
                         extra={"data": {"val": str(synth_micro.annotations["val"]), "root": None}})
    return stem


def test_known_case_metrics(constant_checkpoint, synth_micro, tiny_spec):
    result = evaluate(constant_checkpoint, synth_micro.annotations["val"], num_workers=0, views=(2, 1))
    labels = [r.label for r in load_annotations(synth_micro.annotations["val"]).records]
    n = len(labels)
    assert result.num_videos == n
    assert result.video_top1 == pytest.approx(labels.count(FAVOURITE) / n)
    assert result.clip_top1 == pytest.approx(labels.count(FAVOURITE) / n)
    assert result.video_top5 == pytest.approx(sum(FAVOURITE <= y < FAVOURITE + 5 for y in labels) / n)
    assert result.mean_class_acc == pytest.approx(1 / len(set(labels)))  # recall 1 for class 3, 0 elsewhere
    assert result.mAP == pytest.approx(sum(labels.count(c) / n for c in set(labels)) / len(set(labels)))
    assert result.views == (2, 1) and result.gmacs_per_video == pytest.approx(2 * result.gmacs_per_view)
    assert result.params == sum(p.numel() for p in create_from_spec(tiny_spec()).parameters())


def test_multiview_probabilities_are_view_averages(synth_micro, tiny_spec):
    torch.manual_seed(1)
    model = create_from_spec(tiny_spec()).eval()
    with torch.no_grad():  # an untrained head is near uniform; sharpen it so the views' difference shows
        model.get_classifier().weight.mul_(100)
    annotation = load_annotations(synth_micro.annotations["val"])
    result = evaluate(model, annotation, views=(3, 1), num_workers=0, batch_size=5, count_cost=False)
    dataset = VideoDataset(annotation, spec=model.spec, train=False, num_clips=3, num_crops=1)
    with torch.no_grad():
        for video in (0, 7):
            views = torch.stack([dataset[video * 3 + v]["clip"] for v in range(3)])
            expected = torch.softmax(model(views), dim=-1).mean(dim=0)
            assert torch.allclose(result.video_probs[video], expected, atol=1e-5)
            single = torch.softmax(model(views[:1]), dim=-1)[0]
            assert not torch.allclose(single, expected, atol=1e-3)  # the views do differ


def test_eval_cli_round_trip_uses_recorded_val_set(constant_checkpoint, synth_micro, capsys, tmp_path):
    png = tmp_path / "confusion.png"
    assert main(["eval", str(constant_checkpoint) + ".safetensors", "--views", "2x1", "--workers", "0",
                 "--confusion", str(png), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    direct = evaluate(constant_checkpoint, synth_micro.annotations["val"], num_workers=0, views=(2, 1))
    assert out["video_top1"] == pytest.approx(direct.video_top1) and out["views"] == [2, 1]
    assert out["data"] == str(synth_micro.annotations["val"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_topk_names_and_cost(constant_checkpoint, synth_micro, capsys):
    video = load_annotations(synth_micro.annotations["val"]).records[0].path
    assert main(["predict", str(constant_checkpoint), video, "--topk", "3", "--views", "2x1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [t["class"] for t in out["topk"]] == [synth_micro.class_names[i] for i in (3, 4, 5)]
    probs = [t["probability"] for t in out["topk"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    assert out["gmacs"] == pytest.approx(2 * out["gmacs_per_view"]) and out["gmacs_per_view"] > 0


def test_predict_long_video(constant_checkpoint, make_index_video, capsys):
    long_video = make_index_video("long.mp4", num_frames=600, gop=32)
    assert main(["predict", str(constant_checkpoint), str(long_video), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["topk"][0]["index"] == FAVOURITE and out["topk"][0]["probability"] > 0.5


def test_unreadable_video_is_a_one_line_error(constant_checkpoint, tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    assert main(["predict", str(constant_checkpoint), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


def test_corrupt_checkpoint_rejected(constant_checkpoint, capsys):
    weights = constant_checkpoint.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["eval", str(weights), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and str(weights) in err[0]


def test_foreign_checkpoint_rejected(tmp_path, capsys):
    from safetensors.torch import save_file

    foreign = tmp_path / "someone_elses.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(foreign))
    assert main(["eval", str(foreign), "--data", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a complete effvid checkpoint" in err[0]


def test_eval_and_predict_take_a_device(constant_checkpoint, synth_micro, capsys):
    assert main(["eval", str(constant_checkpoint), "--views", "1x1", "--workers", "0", "--device", "cpu",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and out["amp"] == "off" and out["processes"] == 1
    video = load_annotations(synth_micro.annotations["val"]).records[0].path
    assert main(["predict", str(constant_checkpoint), video, "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["topk"][0]["index"] == FAVOURITE
    if not torch.cuda.is_available():
        assert main(["eval", str(constant_checkpoint), "--workers", "0", "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "CUDA is not available" in err[0]


def test_eval_under_torchrun_shards_the_videos_and_rank_0_prints_the_same_result(constant_checkpoint, synth_micro):
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    args = ["eval", str(constant_checkpoint), "--views", "2x1", "--workers", "0", "--device", "cpu", "--json"]
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "effvid", *args],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 only
    sharded = json.loads(lines[0])
    single = evaluate(constant_checkpoint, synth_micro.annotations["val"], num_workers=0, views=(2, 1)).to_dict()
    assert sharded["processes"] == 2 and sharded["num_videos"] == single["num_videos"]
    for key in ("video_top1", "video_top5", "clip_top1", "mAP"):
        assert sharded[key] == pytest.approx(single[key], abs=1e-9)
