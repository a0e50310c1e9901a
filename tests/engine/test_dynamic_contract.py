"""The dynamic-model contract end to end: a plugin method found by entry point, its per-sample
cost checked against the MACs it executed, and reported by ``effvid eval`` and ``predict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from effvid.cost.executed import check_reported_cost, count_executed
from effvid.data.video_writer import write_video
from effvid.engine.checkpoint import load_model, save_checkpoint
from effvid.errors import ConfigError
from effvid.models import create_from_spec, default_spec, get_method, list_methods
from effvid.spec import ArchSpec, MethodSpec

SPEC = default_spec("r2plus1d_18", num_classes=3, num_frames=4, frame_stride=1, crop_size=32, width_mult=0.25,
                    train_resize=(36, 40), test_resize=36, method=MethodSpec("toy_skip", {"threshold": 0.0}))


def _video(path: Path, level: int) -> Path:
    """A 12-frame clip of one flat grey ``level`` (bright clips open the toy's gate, dark ones not)."""
    frame = np.full((40, 48, 3), level, dtype=np.uint8)
    write_video(path, [frame] * 12, fps=10)
    return path


@pytest.fixture
def checkpoint(discoverable: Path, tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """A saved toy model and an annotation of two bright videos and one dark one."""
    videos = [_video(tmp_path / f"v{i}.mp4", level) for i, level in enumerate((230, 20, 240))]
    annotation = tmp_path / "val.txt"
    annotation.write_text("".join(f"{v.name} {i}\n" for i, v in enumerate(videos)))
    model = create_from_spec(SPEC)
    stem = tmp_path / "toy" / "best"
    save_checkpoint(stem, model=model, class_names=["a", "b", "c"],
                    transforms={"backend": "pyav", "val_views": [2, 1]}, extra={"data": {"val": str(annotation)}})
    return stem, annotation, videos


def test_an_unknown_method_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown method 'no_such_method'"):
        get_method("no_such_method")


def test_a_plugin_method_is_found_by_its_entry_point(discoverable: Path):
    assert "toy_skip" in list_methods()
    model = create_from_spec(SPEC)
    assert model.dynamic and model.spec == SPEC and model.spec.method.settings == {"threshold": 0.0}
    assert ArchSpec.from_dict(SPEC.to_dict()) == SPEC


def test_reported_cost_is_what_executed_and_half_the_samples_skip(discoverable: Path):
    model = create_from_spec(SPEC).eval()
    x = torch.cat([torch.full((1, 3, 4, 32, 32), v) for v in (1.0, -1.0, 2.0, -2.0)])
    executed = check_reported_cost(model, x)
    skipped, ran = model.cheap_gmacs, model.dense_gmacs()
    assert executed.per_sample_gmacs.tolist() == pytest.approx([ran, skipped, ran, skipped], rel=1e-9)
    assert ran > 100 * skipped


def test_eval_and_predict_report_mean_min_max_and_dense_cost_from_executed_counts(checkpoint, discoverable):
    stem, annotation, videos = checkpoint
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(discoverable), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "effvid", "eval", str(stem), "--json", "--workers", "0"],
                         capture_output=True, text=True, env=env, cwd=discoverable, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    model = load_model(stem)
    dataset_clip = _clips(stem, videos)
    per_view = count_executed(model, dataset_clip).per_sample_gmacs  # 3 videos x 2 clips, in order
    per_video = per_view.view(3, 2).sum(dim=1)
    assert result["dynamic"] is True and result["views"] == [2, 1]
    assert result["gmacs_per_view"] == pytest.approx(float(per_view.mean()), rel=1e-9)
    assert result["gmacs_per_view_min"] == pytest.approx(float(per_view.min()), rel=1e-9)
    assert result["gmacs_per_view_max"] == pytest.approx(float(per_view.max()), rel=1e-9)
    assert result["gmacs_per_video"] == pytest.approx(float(per_video.mean()), rel=1e-9)
    assert result["gmacs_per_video_min"] == pytest.approx(float(per_video.min()), rel=1e-9)
    assert result["dense_gmacs_per_view"] == pytest.approx(model.dense_gmacs(), rel=1e-9)
    assert result["dense_gmacs_per_video"] == pytest.approx(2 * model.dense_gmacs(), rel=1e-9)
    assert result["gmacs_per_view_min"] < result["gmacs_per_view"] < result["gmacs_per_view_max"]

    dark = subprocess.run([sys.executable, "-m", "effvid", "predict", str(stem), str(videos[1]), "--json",
                           "--views", "2x1"], capture_output=True, text=True, env=env, cwd=discoverable, timeout=300)
    assert dark.returncode == 0, dark.stderr
    prediction = json.loads(dark.stdout)
    assert prediction["dynamic"] is True
    assert prediction["gmacs"] == pytest.approx(float(per_video[1]), rel=1e-9)
    assert prediction["gmacs_per_view_max"] == pytest.approx(model.cheap_gmacs, rel=1e-9)
    assert prediction["dense_gmacs_per_view"] == pytest.approx(model.dense_gmacs(), rel=1e-9)

    flops = subprocess.run([sys.executable, "-m", "effvid", "flops", str(stem) + ".json", "--json"],
                           capture_output=True, text=True, env=env, cwd=discoverable, timeout=300)
    assert flops.returncode == 0, flops.stderr
    priced = json.loads(flops.stdout)
    assert priced["dynamic"] is True and priced["gmacs"] == pytest.approx(model.dense_gmacs(), rel=1e-9)
    assert priced["spec"]["method"] == {"name": "toy_skip", "settings": {"threshold": 0.0}}


def test_eval_of_a_static_model_reports_equal_mean_min_max_and_dense(tmp_path: Path):
    from effvid.engine.evaluate import evaluate

    spec = SPEC.replace(method=None)
    video = _video(tmp_path / "v.mp4", 128)
    annotation = tmp_path / "val.txt"
    annotation.write_text(f"{video.name} 0\n")
    result = evaluate(create_from_spec(spec), annotation, views=(2, 1), num_workers=0).to_dict()
    keys = ["gmacs_per_view", "gmacs_per_view_min", "gmacs_per_view_max", "dense_gmacs_per_view"]
    assert len({result[k] for k in keys}) == 1 and result["dynamic"] is False
    assert result["gmacs_per_video"] == pytest.approx(2 * result["gmacs_per_view"])


def _clips(stem: Path, videos: list[Path]) -> torch.Tensor:
    """The test views ``effvid eval`` feeds the model, decoded the same way, in video order."""
    from effvid.data.annotations import Annotation, VideoRecord
    from effvid.data.dataset import VideoDataset

    records = tuple(VideoRecord(path=str(v), label=i, video_id=str(v)) for i, v in enumerate(videos))
    annotation = Annotation(records=records, class_names=("a", "b", "c"), multilabel=False, format="single")
    dataset = VideoDataset(annotation, spec=load_model(stem).spec, train=False, num_clips=2, num_crops=1)
    items = sorted((dataset[i] for i in range(len(dataset))), key=lambda d: (int(d["video_index"]), int(d["view_index"])))
    return torch.stack([item["clip"] for item in items])


def test_the_trainer_calls_set_epoch_and_passes_the_cost_to_loss_terms(discoverable, subset_annotation,
                                                                        write_config, tmp_path):
    import effvid_toy_skip

    from effvid.engine.train_config import load_train_config
    from effvid.engine.trainer import train

    train_ann = subset_annotation(8)
    model = {"method": {"name": "toy_skip", "settings": {"threshold": 0.0}}}
    config = write_config(train_ann, train_ann, epochs=3, batch_size=4, model=model,
                          losses=[{"name": "ce"}, {"name": "cost", "weight": 0.5}])
    effvid_toy_skip.SET_EPOCH_CALLS.clear()
    result = train(load_train_config(config), progress=False)
    assert effvid_toy_skip.SET_EPOCH_CALLS == [(0, 3), (1, 3), (2, 3)]
    records = [json.loads(line) for line in (Path(result.run_dir) / "metrics.jsonl").read_text().splitlines()]
    costs = [r["train"]["cost"] for r in records]
    assert all(0.0 < c <= 1.0 for c in costs), costs  # the cheap head alone costs a sliver of the dense cost
    assert records[-1]["val"]["dense_gmacs_per_view"] > records[-1]["val"]["gmacs_per_view_min"]
    log = (Path(result.run_dir) / "train.log").read_text()
    assert "epoch 3/3" in log
