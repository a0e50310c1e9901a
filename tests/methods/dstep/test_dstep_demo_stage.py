"""The D-STEP stage of ``effvid demo``, tiny preset, end to end on the micro SynthActions set: a
TSM-R18 trained, D-STEP at D = 0.6 trained from it, both compared (accuracy, cost, latency)."""

from __future__ import annotations

import time

from effvid.engine.checkpoint import read_sidecar
from effvid.methods.dstep.demo_stage import BASELINE, DSTEP, run_demo_stage


def test_the_tiny_dstep_stage_trains_both_and_compares_them(synth_micro, tmp_path):
    start = time.perf_counter()
    result = run_demo_stage(synth_micro.annotations, tmp_path / "dstep", preset="tiny", progress=False)
    assert time.perf_counter() - start < 60
    assert set(result) == {"rows", "checkpoints", "table_markdown"}
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {BASELINE, DSTEP}
    base, dstep = rows[BASELINE], rows[DSTEP]
    assert read_sidecar(result["checkpoints"][DSTEP])["spec"]["method"]["name"] == "dstep"
    assert base["dynamic"] is False and dstep["dynamic"] is True
    assert dstep["gmacs_per_video_min"] <= dstep["gmacs_per_video"] <= dstep["gmacs_per_video_max"]
    assert dstep["gmacs_per_video_max"] <= dstep["dense_gmacs_per_video"]
    assert all(row["latency_ms"] > 0 and row["latency_clips"] == 16 for row in rows.values())
    assert DSTEP in result["table_markdown"] and "time saved / GMACs saved" in result["table_markdown"]
    # a second call resumes: both runs are complete, nothing trains again
    again = time.perf_counter()
    assert {r["model"] for r in run_demo_stage(synth_micro.annotations, tmp_path / "dstep", preset="tiny",
                                               progress=False)["rows"]} == {BASELINE, DSTEP}
    assert time.perf_counter() - again < 30
