"""The trainer learns, stages freeze what they say, distillation leaves the teacher alone, NaN stops cleanly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from effvid.engine import checkpoint as ckpt
from effvid.engine.distributed import seed_everything
from effvid.engine.evaluate import evaluate
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import EffvidError
from effvid.models import create_from_spec
from effvid.spec import ArchSpec


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_tiny_subset(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(8)
    # precise BN: after 16 steps the running averages still lag; recomputing them makes eval match training.
    # The rate decays: at a constant 0.02 the last epochs swing (train CE 0.01 -> 0.5 -> 0.02) and so does the score.
    config = write_config(subset, subset, epochs=16, batch_size=8, eval_every=16, optim={"lr": 0.02},
                          schedule={"decay": "cosine", "final_factor": 0.05}, precise_bn_batches=1)
    result = train(load_train_config(config), progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == list(range(1, 17))
    assert records[-1]["train"]["ce"] < 0.3 * records[0]["train"]["ce"]
    assert result.best_metrics["video_top1"] >= 0.875  # 7 of the 8 training videos, seen at test geometry
    assert result.epochs_completed == 16 and result.skipped_files == 0
    again = evaluate(result.best_checkpoint, subset, num_workers=0)
    assert again.video_top1 == pytest.approx(result.best_metrics["video_top1"])
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and any((run / "tensorboard").iterdir())
    meta = ckpt.read_sidecar(result.best_checkpoint)
    assert meta["spec"]["width_mult"] == 0.25 and len(meta["class_names"]) == 16
    assert meta["extra"]["data"]["val"] == str(subset)
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch_*.json")) == ["epoch_0016.json"]


def test_stage_freezes_parameters_and_selects_losses(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(4)
    config = write_config(subset, None, epochs=2, stages=[
        {"name": "head", "epochs": 1, "train": ["fc.*"], "losses": ["ce"]},
        {"name": "all", "epochs": 1, "lr_scale": 0.5}])
    cfg = load_train_config(config)
    result = train(cfg, progress=False)
    records = read_metrics(tmp_path / "run")
    assert [r["stage"] for r in records] == ["head", "all"]
    assert records[1]["lr"] == pytest.approx(0.5 * records[0]["lr"])
    assert records[0]["loss_weights"] == {"ce": 1.0} and result.epochs_completed == 2


def test_head_only_stage_leaves_backbone_untouched(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(4)
    config = write_config(subset, None, epochs=1, stages=[{"name": "head", "epochs": 1, "train": ["fc.*"]}],
                          optim={"weight_decay": 0.1})
    cfg = load_train_config(config)
    torch.manual_seed(0)
    result = train(cfg, progress=False)
    trained, _ = ckpt.load_checkpoint(result.last_checkpoint)
    seed_everything(cfg.seed)
    fresh = create_from_spec(ArchSpec.from_dict(ckpt.read_sidecar(result.last_checkpoint)["spec"])).state_dict()
    conv = [k for k in trained if k.endswith("weight") and not k.startswith("fc.") and trained[k].dim() == 5]
    assert all(torch.equal(trained[k], fresh[k]) for k in conv)
    assert not torch.equal(trained["fc.weight"], fresh["fc.weight"])


def test_distillation_keeps_teacher_weights_and_file(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(4)
    teacher_cfg = write_config(subset, None, name="teacher.yaml", epochs=1, run_dir=str(tmp_path / "teacher"))
    teacher = train(load_train_config(teacher_cfg), progress=False).last_checkpoint
    files = [teacher + suffix for suffix in (".safetensors", ".json", ".state.pt")]
    before = {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}
    student_cfg = write_config(subset, None, name="student.yaml", epochs=1, run_dir=str(tmp_path / "student"),
                               model={"width_mult": 0.125},
                               distill={"teacher": teacher, "temperature": 5.0, "alpha": 500.0})
    train(load_train_config(student_cfg), progress=False)
    assert {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files} == before
    record = read_metrics(tmp_path / "student")[0]
    assert record["train"]["kd"] > 0 and record["loss_weights"]["kd"] == 500.0
    assert record["train"]["loss"] == pytest.approx(record["train"]["ce"] + 500.0 * record["train"]["kd"], rel=1e-4)


def test_init_from_loads_matching_weights(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(4)
    first = train(load_train_config(write_config(subset, None, name="a.yaml", epochs=1,
                                                 run_dir=str(tmp_path / "a"))), progress=False)
    source, _ = ckpt.load_checkpoint(first.last_checkpoint)
    cfg = load_train_config(write_config(subset, None, name="b.yaml", epochs=1, run_dir=str(tmp_path / "b"),
                                         init_from=first.last_checkpoint, init_lr_scale=1e-9))
    second = train(cfg, progress=False)
    loaded, _ = ckpt.load_checkpoint(second.last_checkpoint)
    conv = "stem.0.weight"
    assert torch.allclose(loaded[conv], source[conv], atol=1e-6)  # lr ~ 0: the copy barely moves
    assert read_metrics(tmp_path / "b")[0]["lr"] < 1e-10


def test_nan_loss_stops_and_keeps_last_good_checkpoint(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(8)
    # an infinite learning rate from epoch 2 on: its first step ruins the weights, its second loss is NaN
    config = write_config(subset, None, epochs=3, schedule={"decay": "step", "milestones": [1], "gamma": float("inf")})
    with pytest.raises(EffvidError, match=r"loss became (nan|inf|-inf) at epoch 2, step 2"):
        train(load_train_config(config), progress=False)
    good = ckpt.find_last_complete(tmp_path / "run")
    assert good is not None and good.name == "epoch_0001"
    weights, _ = ckpt.load_checkpoint(good)
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]


def test_every_run_writes_a_report_with_curves_metrics_cost_and_confusion(synth_micro, subset_annotation,
                                                                          write_config, tmp_path):
    from effvid.engine.train_config import load_train_config
    from effvid.engine.trainer import train

    config = write_config(subset_annotation(8), synth_micro.annotations["val"], epochs=2, max_steps_per_epoch=1)
    result = train(load_train_config(config), progress=False)
    run_dir = Path(result.run_dir)
    report = (run_dir / "report.md").read_text()
    for png in ("training_curves.png", "confusion.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    assert "best (epoch" in report and "final" in report
    assert "GMACs per view at input 1x3x4x32x32" in report
