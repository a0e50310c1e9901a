"""``effvid bench``: latency, throughput and GMAC/s per batch size, the load average around the
measurement, the per-layer split of time and GMACs, checkpoints, and dynamic models timed on
real clips beside the cost they report."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from effvid.cost.latency import (
    COMPETING_WARNING,
    OTHER_CORES_LIMIT,
    OTHER_OPS,
    CpuWatch,
    LayerTimes,
    competing,
    executed_layer_gmacs,
    layer_table,
    leaf_layers,
    load_record,
    machine_load,
    static_layer_gmacs,
    timed_runs,
)
from effvid.cost.static import count_cost
from effvid.engine.checkpoint import save_checkpoint
from effvid.models import create_from_spec, default_spec
from effvid.spec import MethodSpec

TINY = {"num_frames": 4, "crop_size": 32, "width_mult": 0.25, "depth_mult": 0.5}
TINY_FLAGS = ["--frames", "4", "--size", "32", "--width", "0.25", "--depth", "0.5"]
PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "effvid_toy_skip.py"


def effvid(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effvid", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def tiny_bench() -> dict:
    """``effvid bench r2plus1d_18`` (tiny) at batch 1 and 2 with the per-layer split, as JSON."""
    run = effvid("bench", "r2plus1d_18", *TINY_FLAGS, "--device", "cpu", "--batch", "1,2", "--threads", "1",
                 "--repeats", "2", "--per-layer", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_bench_json_reports_latency_throughput_gmacs_threads_device_and_load(tiny_bench):
    result = tiny_bench
    flops = effvid("flops", "r2plus1d_18", *TINY_FLAGS, "--json")
    assert flops.returncode == 0, flops.stderr
    assert result["gmacs"] == pytest.approx(json.loads(flops.stdout)["gmacs"], rel=1e-12)
    assert result["input_shape"] == [1, 3, 4, 32, 32] and result["params"] == json.loads(flops.stdout)["params"]
    assert result["device"] == "cpu" and result["threads"] == 1 and result["variant"] == "channels_last"
    assert result["checkpoint"] is None and result["dynamic"] is False and result["repeats"] == 2
    assert [row["batch"] for row in result["batches"]] == [1, 2]
    for row in result["batches"]:
        assert 0 < row["latency_ms_min"] <= row["latency_ms"] <= row["latency_ms_max"]
        assert row["clips_per_s"] == pytest.approx(row["batch"] * 1000 / row["latency_ms"])
        assert row["gmac_per_s"] == pytest.approx(result["gmacs"] * row["clips_per_s"])
    for key in ("load_average_before", "load_average_after"):
        assert isinstance(result[key], float) and result[key] >= 0
    assert result["other_cpu_cores"] is None or result["other_cpu_cores"] >= 0
    busy = competing(result["load_average_before"], 1) or competing(result["load_average_after"], 1) \
        or (result["other_cpu_cores"] or 0) > OTHER_CORES_LIMIT
    assert result["competing"] is busy and result["load_threshold"] == 1.5
    assert (result["warning"] is not None) is busy


def test_per_layer_shares_sum_to_one_and_gmacs_follow_the_static_split(tiny_bench):
    per_layer = tiny_bench["per_layer"]
    rows = per_layer["rows"]
    assert per_layer["batch"] == 1 and per_layer["runs"] == 2
    assert sum(row["time_share"] for row in rows) == pytest.approx(1.0, abs=1e-6)
    assert sum(row["gmacs_share"] for row in rows) == pytest.approx(1.0, abs=1e-6)
    assert sum(row["time_ms"] for row in rows) == pytest.approx(per_layer["forward_ms"], rel=1e-6)
    assert [row["time_ms"] for row in rows] == sorted((row["time_ms"] for row in rows), reverse=True)
    assert sum(row["module"] == OTHER_OPS for row in rows) == 1

    report = count_cost(default_spec("r2plus1d_18", **TINY), per_layer=True)
    static = static_layer_gmacs(report.layers)
    layers = {row["module"]: row for row in rows if row["module"] != OTHER_OPS}
    assert set(layers) <= set(static) and all(row["type"] in ("Conv3d", "OneDnnConv3d", "FoldedConv3d", "Linear") for row in layers.values())
    for name, row in layers.items():
        assert row["gmacs_share"] == pytest.approx(static[name] / report.gmacs, rel=1e-9)
        assert row["time_ms"] > 0
    assert sum(row["gmacs"] for row in rows) == pytest.approx(report.gmacs, rel=1e-9)


def test_layer_table_puts_the_unattributed_remainder_in_its_own_row():
    times = LayerTimes(layers={"a": 0.3, "b": 0.05}, total=0.5, runs=2)
    rows = layer_table(times, {"a": 1.0, "b": 3.0}, 5.0)
    by_name = {row["module"]: row for row in rows}
    assert [row["module"] for row in rows] == ["a", OTHER_OPS, "b"]  # by time per forward: 150, 75, 25 ms
    assert by_name["a"]["time_ms"] == pytest.approx(150.0) and by_name[OTHER_OPS]["time_ms"] == pytest.approx(75.0)
    assert by_name[OTHER_OPS]["gmacs"] == pytest.approx(1.0) and by_name["b"]["gmacs_share"] == pytest.approx(0.6)
    assert sum(row["time_share"] for row in rows) == pytest.approx(1.0)


def test_load_average_helpers_flag_a_competing_process():
    assert competing(2.6, 2) and not competing(2.4, 2) and not competing(float("nan"), 1)
    quiet = load_record(0.2, 1.4, 1)
    assert quiet["competing"] is False and quiet["warning"] is None
    busy = load_record(0.2, 3.1, 2)
    assert busy["competing"] is True and COMPETING_WARNING in busy["warning"] and "3.10" in busy["warning"]
    assert machine_load() >= 0
    by_cpu = load_record(0.2, 0.3, 2, other_cores=0.9)
    assert by_cpu["competing"] is True and "0.90 cores" in by_cpu["warning"] and "load average" not in by_cpu["warning"]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="CpuWatch reads /proc/stat (Linux)")
def test_cpu_watch_sees_another_process_spinning():
    spin = "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass"
    with CpuWatch() as watch:
        subprocess.run([sys.executable, "-c", spin], check=True, timeout=60)
    assert watch.other_cores is not None and watch.other_cores > 0.5  # a child process is another process
    synced = []
    times = timed_runs(lambda: None, 3, synchronize=lambda: synced.append(1))
    assert len(times) == 3 and len(synced) == 6


def test_bench_on_a_checkpoint_and_its_one_line_errors(tmp_path: Path):
    spec = default_spec("r2plus1d_18", num_classes=3, **TINY)
    save_checkpoint(tmp_path / "tiny", model=create_from_spec(spec), class_names=["a", "b", "c"])
    run = effvid("bench", str(tmp_path / "tiny.json"), "--batch", "1", "--threads", "1", "--repeats", "2",
                 "--device", "cpu", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["checkpoint"] == str(tmp_path / "tiny") and result["model"] == "r2plus1d_18"
    assert result["gmacs"] == pytest.approx(count_cost(spec).gmacs, rel=1e-12)
    assert [row["batch"] for row in result["batches"]] == [1] and result["batches"][0]["latency_ms"] > 0

    refused = effvid("bench", str(tmp_path / "tiny"), "--width", "0.5")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--width" in refused.stderr
    if not torch.cuda.is_available():
        no_cuda = effvid("bench", "r2plus1d_18", "--device", "cuda")
        assert no_cuda.returncode == 2 and no_cuda.stderr.count("\n") == 1
        assert "CUDA is not available" in no_cuda.stderr


@pytest.fixture
def toy_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A saved toy dynamic model (the plugin in tests/plugins), its validation set of two bright
    videos and one dark one recorded in the sidecar, and the environment that finds the plugin."""
    from effvid.data.video_writer import write_video

    plugins = tmp_path / "plugins"
    (plugins / "effvid_toy_skip-0.1.dist-info").mkdir(parents=True)
    shutil.copy(PLUGIN, plugins / PLUGIN.name)
    (plugins / "effvid_toy_skip-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: effvid-toy-skip\nVersion: 0.1\n")
    (plugins / "effvid_toy_skip-0.1.dist-info" / "entry_points.txt").write_text(
        "[effvid.methods]\ntoy_skip = effvid_toy_skip\n")
    sys.path.insert(0, str(plugins))
    importlib.invalidate_caches()
    try:
        spec = default_spec("r2plus1d_18", num_classes=3, frame_stride=1, train_resize=(36, 40), test_resize=36,
                            method=MethodSpec("toy_skip", {"threshold": 0.0}), **TINY)
        model = create_from_spec(spec)
    finally:
        sys.path.remove(str(plugins))
    lines = []
    for i, level in enumerate((230, 20, 240)):
        write_video(tmp_path / f"v{i}.mp4", [np.full((40, 48, 3), level, dtype=np.uint8)] * 12, fps=10)
        lines.append(f"v{i}.mp4 {i}\n")
    (tmp_path / "val.txt").write_text("".join(lines))
    stem = tmp_path / "toy"
    save_checkpoint(stem, model=model, class_names=["a", "b", "c"], transforms={"backend": "pyav"},
                    extra={"data": {"val": str(tmp_path / "val.txt")}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    return stem, env, model


def test_a_dynamic_checkpoint_is_timed_on_real_clips_beside_its_reported_cost(toy_checkpoint):
    stem, env, model = toy_checkpoint
    run = effvid("bench", str(stem), "--threads", "1", "--repeats", "1", "--device", "cpu", "--per-layer", "--json",
                 env=env, cwd=stem.parent)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    clips = result["clips"]
    dense, cheap = model.dense_gmacs(), model.cheap_gmacs
    assert result["dynamic"] is True and result["gmacs_dense"] == pytest.approx(dense, rel=1e-9)
    assert result["data"].endswith("val.txt") and clips["clips"] == 3  # fewer videos than --clips 16
    assert clips["gmacs_mean"] == pytest.approx((2 * dense + cheap) / 3, rel=1e-9)  # two bright clips run the backbone
    assert clips["gmacs_min"] == pytest.approx(cheap) and clips["gmacs_max"] == pytest.approx(dense)
    assert clips["latency_ms_mean"] > 0 and clips["gmac_per_s"] == pytest.approx(clips["gmacs_mean"] * clips["clips_per_s"])
    rows = result["per_layer"]["rows"]
    assert sum(row["time_share"] for row in rows) == pytest.approx(1.0, abs=1e-6)
    assert sum(row["gmacs_share"] for row in rows) == pytest.approx(1.0, abs=1e-6)
    assert result["per_layer"]["gmacs"] == pytest.approx(clips["gmacs_mean"], rel=1e-6)  # executed = reported

    batched = effvid("bench", str(stem), "--batch", "8", env=env, cwd=stem.parent)
    assert batched.returncode == 2 and "batch 1" in batched.stderr and batched.stderr.count("\n") == 1


@pytest.mark.parametrize(("method", "name"), [("vared2", "r2plus1d_18"), ("dstep", "tsm_r18")])
def test_a_dynamic_models_layers_hold_all_its_convolution_work(method, name):
    spec = default_spec(name, num_classes=5, crop_size=32, num_frames=4, width_mult=0.25,
                        method=MethodSpec(method, {}))
    model = create_from_spec(spec).eval()
    layers = leaf_layers(model)
    assert not any(a.startswith(f"{b}.") for a in layers for b in layers)  # no layer inside another
    per_layer, total = executed_layer_gmacs(model, [torch.randn(1, 3, 4, 32, 32)])
    kinds = {type(module).__name__ for module in layers.values()}
    assert {"DynamicConv3d", "DStepBasicBlock"} & kinds
    assert sum(per_layer.values()) == pytest.approx(total, rel=1e-9)  # every MAC lies in a layer, none in OTHER
