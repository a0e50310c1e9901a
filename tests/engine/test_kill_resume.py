"""A run killed with SIGKILL and resumed ends where an uninterrupted run ends, with each epoch logged once.

Asserted: the resumed run's metrics.jsonl lists epochs 1..3 exactly once, its learning rates
and losses per epoch equal the uninterrupted run's, and its final weights equal the
uninterrupted run's (same process setup, so the same arithmetic; a tiny tolerance for safety).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from effvid.engine import checkpoint as ckpt


def effvid_train(config, run_dir) -> list[str]:
    return [sys.executable, "-m", "effvid.cli", "train", str(config), f"run_dir={run_dir}"]


def epochs(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_matches_uninterrupted_run(subset_annotation, write_config, tmp_path):
    subset = subset_annotation(8)
    config = write_config(subset, None, epochs=3, batch_size=2, schedule={"warmup_epochs": 1, "decay": "cosine"},
                          optim={"name": "sgd", "lr": 0.05, "weight_decay": 0.0001})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    victim = subprocess.Popen(effvid_train(config, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = killed / "checkpoints" / "epoch_0001.json"
    deadline = time.time() + 240
    while not first.exists():
        assert victim.poll() is None, victim.stderr.read().decode()
        assert time.time() < deadline, "the first epoch never finished"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "checkpoints" / "epoch_0003.json").exists()

    subprocess.run(effvid_train(config, straight), env=env, check=True, capture_output=True)
    resumed = subprocess.run(effvid_train(config, killed), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    assert [r["epoch"] for r in epochs(killed)] == [1, 2, 3]
    for a, b in zip(epochs(killed), epochs(straight)):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
        assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-5)
    final_killed, _ = ckpt.load_checkpoint(ckpt.find_last_complete(killed))
    final_straight, _ = ckpt.load_checkpoint(ckpt.find_last_complete(straight))
    assert final_killed.keys() == final_straight.keys()
    for key, value in final_straight.items():
        assert torch.allclose(final_killed[key].float(), value.float(), atol=1e-5, rtol=1e-4), key
