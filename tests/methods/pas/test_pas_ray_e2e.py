"""A local Ray run of a tiny two-iteration PAS search, end to end, from the shipped SynthActions config."""

from __future__ import annotations

import json
from pathlib import Path

from effvid.engine.checkpoint import find_last_complete, read_sidecar
from effvid.methods.pas.config import load_shrink_config
from effvid.methods.pas.ledger import Ledger
from effvid.methods.pas.report import write_report
from effvid.methods.pas.search import run_search

CONFIG = Path(__file__).resolve().parents[3] / "effvid" / "configs" / "pas" / "synth_tiny.yaml"


def test_two_iteration_search_with_controls_on_local_ray(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    cfg = load_shrink_config(CONFIG, [f"run_dir={run_dir}", f"data.train={tiny_data / 'train.txt'}",
                                      f"data.val={tiny_data / 'val.txt'}", "operators=[s,t,c,l]", "control=true",
                                      "latency_repeats=1", "train.max_steps_per_epoch=2",
                                      "control_train={epochs: 2, batch_size: 8, max_steps_per_epoch: 2, device: cpu}"])
    logs: list[str] = []
    summary = run_search(cfg, log=logs.append)

    ledger = Ledger.in_run_dir(run_dir)
    base = ledger.get("base")
    assert base["status"] == "done" and base["init"] == "random" and base["teacher"] is None
    assert read_sidecar(base["checkpoint"])["spec"]["width_mult"] == 0.25
    for iteration in (1, 2):
        entries = {e["operator"]: e for e in ledger.iteration(iteration)}
        assert set(entries) == set("stcl")
        # depth_mult 0.5 leaves one block per stage: epsilon_l is pruned, recorded with its reason, never trained
        assert entries["l"]["status"] == "pruned" and "layer" in entries["l"]["reason"]
        assert not (run_dir / "hypotheses" / f"it{iteration}-l").exists()
        for op in "stc":
            e = entries[op]
            assert e["status"] == "done" and e["attempts"] == 1 and e["teacher"] == base["checkpoint"]
            assert 0.0 <= e["top1"] <= e["top5"] <= 1.0
            assert Path(e["checkpoint"] + ".safetensors").exists()
        assert entries["s"]["init"] == "from-previous" and entries["c"]["init"] == "random"
    selected = ledger.selected()
    assert len(selected) == 2 and selected[1]["parent"] == selected[0]["id"]
    assert base["gmacs"] > selected[0]["gmacs"] > selected[1]["gmacs"]
    controls = ledger.of_kind("control")
    assert [c["spec"] for c in controls] == [s["spec"] for s in selected]
    assert all(c["status"] == "done" and c["teacher"] is None and c["init"] == "random" for c in controls)
    # trained with control_train (2 epochs), not the hypotheses' train (1 epoch)
    assert all(find_last_complete(c["run_dir"]).name == "epoch_0002" for c in controls)

    assert summary["sequence"] == [s["operator"] for s in selected]
    assert [row["model"] for row in summary["table"]] == ["r2plus1d_18", "r2plus1d_18-PAS-1", "r2plus1d_18-PAS-2"]
    assert all(row["latency_ms"] > 0 for row in summary["table"])
    assert summary["table"][1]["without_pas_top1"] is not None
    report = (run_dir / "report.md").read_text()
    assert "without PAS top-1" in report and "pruned" in report and "r2plus1d_18-PAS-2" in report
    assert (run_dir / "accuracy_vs_gmacs.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "top1_per_iteration.png").read_bytes()[:4] == b"\x89PNG"  # Figure 3
    assert "without PAS top-5 %" in report and "1 thread" in report
    assert all(row["without_pas_top5"] is not None for row in summary["table"][1:])
    assert json.loads((run_dir / "report.json").read_text())["sequence"] == summary["sequence"]

    # running it again trains nothing: every network is already in the ledger
    again = run_search(cfg, log=logs.append)
    assert again["sequence"] == summary["sequence"]
    assert all(e["attempts"] <= 1 for e in Ledger.in_run_dir(run_dir).entries.values())
    # and the report command rewrites the report from the ledger alone
    assert write_report(run_dir, log=logs.append)["table"] == again["table"]
