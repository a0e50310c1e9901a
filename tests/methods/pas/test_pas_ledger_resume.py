"""Resume: `effvid shrink` killed with SIGKILL mid-iteration retrains nothing that had finished; failures are retried and reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from effvid.engine.checkpoint import save_checkpoint
from effvid.errors import EffvidError
from effvid.methods.pas.config import load_shrink_config
from effvid.methods.pas.ledger import Ledger
from effvid.methods.pas.search import run_search
from effvid.models import create_from_spec, default_spec


def _write_config(folder: Path, data: Path, **changes) -> Path:
    spec = default_spec("r2plus1d_18", num_classes=16, num_frames=4, frame_stride=4, crop_size=32,
                        train_resize=(32, 36), test_resize=32, width_mult=0.25, depth_mult=0.5)
    stem = folder / "base" / "best"
    stem.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(stem, model=create_from_spec(spec), spec=spec, class_names=[str(i) for i in range(16)])
    cfg = {"run_dir": str(folder / "run"), "base": {"checkpoint": str(stem)}, "iterations": 1,
           "operators": ["s", "t", "c"], "retries": 1, "latency_repeats": 0,
           "data": {"train": str(data / "train.txt"), "val": str(data / "val.txt"), "num_workers": 0},
           "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 2, "device": "cpu",
                     "optim": {"lr": 0.05}, "schedule": {"decay": "constant"}},
           # one hypothesis at a time, so a kill always lands while others are unfinished
           "ray": {"num_cpus": 1}, **changes}
    path = folder / "pas.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _shrink(config: Path) -> list[str]:
    return [sys.executable, "-m", "effvid.cli", "shrink", str(config), "--json"]


def test_sigkill_mid_iteration_then_rerun_retrains_nothing_that_had_finished(tiny_data, tmp_path):
    config = _write_config(tmp_path, tiny_data)
    ledger_path = tmp_path / "run" / "ledger.json"
    proc = subprocess.Popen(_shrink(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    finished: dict = {}
    try:
        deadline = time.monotonic() + 240
        while not finished and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if ledger_path.exists():
                entries = json.loads(ledger_path.read_text())["entries"]
                finished = {e["id"]: e for e in entries if e["kind"] == "hypothesis" and e["status"] == "done"}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started in its session
        proc.wait()
    assert finished, "no hypothesis finished before the deadline"
    before = Ledger(ledger_path)
    unfinished = [e["id"] for e in before.iteration(1) if e["status"] != "done"]
    assert unfinished, "the kill should land mid-iteration"
    stamps = {i: Path(e["checkpoint"] + ".safetensors").stat().st_mtime_ns for i, e in finished.items()}

    rerun = subprocess.run(_shrink(config), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    after = Ledger(ledger_path)
    for entry_id, entry in finished.items():
        assert after.get(entry_id)["attempts"] == 1 == entry["attempts"]
        assert Path(entry["checkpoint"] + ".safetensors").stat().st_mtime_ns == stamps[entry_id]
    for entry in after.iteration(1):
        assert entry["status"] == "done", entry
        epochs = [json.loads(line)["epoch"] for line in (Path(entry["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2], (entry["id"], epochs)  # an interrupted one resumed; none repeated an epoch
    assert all(after.get(i)["attempts"] == 2 for i in unfinished if before.get(i)["status"] == "running")
    assert len(summary["sequence"]) == 1 and summary["failed"] == [] and summary["unfinished"] == []


def test_a_failing_hypothesis_is_retried_then_reported_never_dropped(tiny_data, tmp_path):
    # 1000 clips per batch cannot be drawn from a 48-video training set: every training fails
    cfg = load_shrink_config(_write_config(tmp_path, tiny_data), ["train.batch_size=1000", "operators=[s,c]",
                                                                  "ray.num_cpus=2"])
    with pytest.raises(EffvidError, match="it1-s.*batch"):
        run_search(cfg, log=lambda _: None)
    ledger = Ledger.in_run_dir(cfg.run_dir)
    for op in "sc":
        entry = ledger.get(f"it1-{op}")
        assert entry["status"] == "failed" and entry["attempts"] == 2 and "batch_size" in entry["error"]
    report = json.loads((Path(cfg.run_dir) / "report.json").read_text())
    assert sorted(report["failed"]) == ["it1-c", "it1-s"]
