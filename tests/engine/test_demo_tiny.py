"""``effvid demo --preset tiny`` end to end: data, base training, evaluation, PAS, AR-Net against its
Uniform baseline, report, JSON summary; ``--methods`` picks the method stages.

Not skipped or marked slow: `make test` runs it (about 1 minute on 2 cores).
"""

from __future__ import annotations

import json

from effvid.cli import main
from effvid.engine import checkpoint as ckpt
from effvid.methods.pas.ledger import Ledger


def test_demo_tiny_end_to_end(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "synth"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--data", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (data / "manifest.json").exists()
    assert summary["base"]["epochs_completed"] == 5
    row = summary["rows"][0]
    assert 0.0 <= row["video_top1"] <= row["video_top5"] <= 1.0 and row["views"] == "3x1"
    assert row["gmacs_per_view"] > 0 and row["num_videos"] == 32
    meta = ckpt.read_sidecar(summary["base"]["best_checkpoint"])
    assert meta["spec"]["name"] == "r2plus1d_18" and len(meta["class_names"]) == 16
    report = (out / "report.md").read_text()
    assert "| base R(2+1)D |" in report and "![base_training](base_training.png)" in report
    assert (out / "base_training.png").read_bytes()[:4] == b"\x89PNG"
    pas = summary["pas"]
    assert len(pas["iterations"]) == 2 and len(pas["sequence"]) == 2
    assert [r["model"] for r in pas["table"]] == ["r2plus1d_18", "r2plus1d_18-PAS-1", "r2plus1d_18-PAS-2"]
    gmacs = [r["gmacs"] for r in pas["table"]]
    assert gmacs[0] > gmacs[1] > gmacs[2] > 0
    for iteration in pas["iterations"]:
        assert iteration["selected"] in {h["id"] for h in iteration["hypotheses"] if h["status"] == "done"}
    ledger = Ledger.in_run_dir(out / "pas")
    assert str(ledger.path) == pas["ledger"] and [s["id"] for s in ledger.selections] == [
        it["selected"] for it in pas["iterations"]]
    assert "pas_s" in summary["timings_s"] and "r2plus1d_18-PAS-2" in report
    assert "![accuracy_vs_gmacs](pas/accuracy_vs_gmacs.png)" in report
    assert "![top1_per_iteration](pas/top1_per_iteration.png)" in report  # Figure 3

    arnet = {row["model"]: row for row in summary["arnet"]["rows"]}
    assert set(arnet) == {"Uniform", "AR-Net"} and summary["methods"] == ["pas", "vared2", "dstep", "arnet"]
    assert arnet["AR-Net"]["dynamic"] and not arnet["Uniform"]["dynamic"]
    assert arnet["AR-Net"]["gmacs_per_video_min"] <= arnet["AR-Net"]["gmacs_per_video"] \
        <= arnet["AR-Net"]["gmacs_per_video_max"] <= arnet["AR-Net"]["dense_gmacs_per_video"]
    assert all(row["latency_ms"] > 0 for row in arnet.values()) and "arnet_s" in summary["timings_s"]
    assert "| AR-Net" in report and "| Uniform" in report
    for stage in ("vared2", "dstep"):
        rows = summary[stage]["rows"]
        assert len(rows) == 2 and [r["dynamic"] for r in rows] == [False, True], stage
        assert rows[1]["gmacs_per_view_max"] <= rows[1]["dense_gmacs_per_view"] * (1 + 1e-9), stage


def test_demo_methods_picks_the_stages_and_refuses_an_unknown_one(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "synth"
    assert main(["demo", "--preset", "tiny", "--out", str(out), "--data", str(data), "--methods", "arnet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["methods"] == ["arnet"] and summary["pas"] is None and summary["base"] is None
    assert not (out / "base").exists() and (out / "arnet" / "arnet").is_dir()
    assert main(["demo", "--methods", "pas,vared3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vared3" in err[0] and "pas, vared2, dstep, arnet" in err[0]
