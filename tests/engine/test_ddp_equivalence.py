"""Two Gloo processes under torchrun end with the weights of one process at the same global batch.

BatchNorm caveat: without SyncBN (CUDA only) each rank normalises with its own half-batch
statistics, which differ from the full batch's. The data here makes them equal: every record
is the same 4-frame 64x64 video (a clip spans the whole video and the crop the whole frame, so
every item is the identical clip) while the labels differ, so the gradients still depend on which
items each rank gets, and the check fails if DDP does not shard the data or average gradients
correctly. No dropout; SGD with momentum; both sides compute with one thread. Every parameter and
BN running mean is compared; BN running variances differ by design (each rank's unbiased estimate
uses its own half batch) and are left out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from effvid.data.video_writer import write_video
from effvid.engine import checkpoint as ckpt
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train

TORCHRUN = Path(sys.executable).with_name("torchrun")
# Float sums in a different order (gradient all-reduce, half batches) differ by ~1e-7 (seen:
# at most 1.2e-7 after four SGD steps). The frames are 64 pixels so that the last stage still has
# 2x2 positions: at 32 pixels it has one, so identical items give BN a zero variance there and
# float noise grows to 1e-3, a tenth of the weights' whole update.
TOLERANCE = 1e-5


MODEL = {"frame_stride": 1, "num_classes": 4, "crop_size": 64, "train_resize": [64, 64], "test_resize": 64}
"""The tiny R(2+1)D on whole 4-frame 64x64 clips (see the module docstring)."""


def _same_video(tmp_path: Path, seed: int) -> Path:
    """An annotation of 8 records of one random video with labels 0-3 (module docstring)."""
    frames = np.random.default_rng(seed).integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.mp4", frames, fps=25.0)
    annotation = tmp_path / "same_video.txt"
    annotation.write_text("".join(f"clip.mp4 {i % 4}\n" for i in range(8)))
    return annotation


def _single_and_ddp(config: Path, tmp_path: Path):
    """Train ``config`` in this process (global batch 4) and as two Gloo processes of batch 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as each torchrun worker (OMP_NUM_THREADS=1)
    try:
        single = train(load_train_config(config, [f"run_dir={tmp_path / 'single'}"]), progress=False)
    finally:
        torch.set_num_threads(threads)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "effvid.cli", "train",
                          str(config), "batch_size=2", f"run_dir={tmp_path / 'ddp'}"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, f"torchrun exited {run.returncode}:\n{run.stderr[-4000:]}"
    return single


def test_two_process_gloo_matches_single_process(write_config, tmp_path):
    config = write_config(_same_video(tmp_path, 0), None, epochs=2, batch_size=4, model=MODEL,
                          optim={"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0001})
    single = _single_and_ddp(config, tmp_path)

    ddp_stem = ckpt.find_last_complete(tmp_path / "ddp")
    assert ddp_stem is not None and ddp_stem.name == "epoch_0002"
    one, _ = ckpt.load_checkpoint(single.last_checkpoint)
    two, _ = ckpt.load_checkpoint(ddp_stem)
    # BN running variances are not compared: each rank's uses Bessel's n/(n-1) with its half batch
    compared = [k for k in one if not k.endswith("running_var")]
    assert any(k.endswith("running_mean") for k in compared)
    gaps = {key: (two[key].float() - one[key].float()).abs().max().item() for key in compared}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= TOLERANCE, (worst, gaps[worst])
    # the control: one process at a different global batch (2) ends elsewhere, so the check can fail
    other = train(load_train_config(config, [f"run_dir={tmp_path / 'other'}", "batch_size=2"]), progress=False)
    three, _ = ckpt.load_checkpoint(other.last_checkpoint)
    assert (three["fc.weight"] - one["fc.weight"]).abs().max() > 100 * TOLERANCE


def test_loss_term_modules_train_under_ddp_like_one_process(write_config, tmp_path):
    """Feature distillation's connectors (a loss term's own parameters) are averaged by DDP with
    the model: two Gloo processes end with the single process's connector weights."""
    from effvid.models import create_from_spec, default_spec

    teacher = create_from_spec(default_spec("r2plus1d_18", num_classes=4, num_frames=4, crop_size=64, width_mult=0.5,
                                            depth_mult=0.5, train_resize=(64, 64), test_resize=64))
    ckpt.save_checkpoint(tmp_path / "teacher", model=teacher)
    config = write_config(_same_video(tmp_path, 1), None, epochs=1, batch_size=4, model=MODEL,
                          optim={"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
                          distill={"teacher": str(tmp_path / "teacher"), "feature": "mse", "teacher_bn": "eval"})
    single = _single_and_ddp(config, tmp_path)
    one = ckpt.load_training_state(single.last_checkpoint)["extra"]["loss_modules"]
    two = ckpt.load_training_state(ckpt.find_last_complete(tmp_path / "ddp"))["extra"]["loss_modules"]
    weights = [k for k in one if k.startswith("feature.connectors") and k.endswith("weight")]
    assert weights, sorted(one)
    for key in weights:
        assert (one[key] - two[key]).abs().max().item() <= TOLERANCE, key
