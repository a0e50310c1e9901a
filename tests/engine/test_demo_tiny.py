"""``effvid demo --preset tiny`` end to end: data, base training, evaluation, report, JSON summary.

Not skipped or marked slow: `make test` runs it (about 1-2 minutes on 2 cores).
"""

from __future__ import annotations

import json

from effvid.cli import main
from effvid.engine import checkpoint as ckpt


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
