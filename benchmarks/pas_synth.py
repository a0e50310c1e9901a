"""PAS benchmark on SynthActions-small (writes JSON; not a test).

Runs PAS from ``configs/pas/synth_small.yaml`` (the demo's small R(2+1)D-18 trained first, or
an already trained base given with ``--base``, then 3 iterations of all five operators, with the
without-PAS control) and reports:

1. the selected sequence with GMACs per view at every step and the ratio to the previous step;
2. PAS against the without-PAS control (same architecture, CE from scratch) at every iteration;
3. the measured batch-1 CPU latency of each PAS-k network against the base (speed-up).

Expected (issue 5), reported either way: GMACs roughly halve per step, PAS beats the control
from iteration 2, latency falls with GMACs (PAS-3 at least 4x faster than the base).

    nice .venv/bin/python benchmarks/pas_synth.py [--data data/bench] [--base runs/demo-small/base/checkpoints/best] \
        [--out benchmarks/results/pas_synth.json] [key=value ...]

The 1-minute load average is recorded before and after (``load``), against the latency threads of
the config, with a warning when another process competed: the training runs in parallel Ray
tasks, so a high "after" figure can be the benchmark's own work; the latencies are only
quiet-machine figures when nothing else ran.

``key=value`` arguments override the PAS config (e.g. ``train.epochs=1 iterations=2``); the run
directory resumes like ``effvid shrink``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from effvid.cost.latency import load_record, machine_load
from effvid.data.synthetic import ensure_synthactions
from effvid.methods.pas.config import load_shrink_config
from effvid.methods.pas.search import run_search

CONFIG = Path(__file__).resolve().parents[1] / "effvid" / "configs" / "pas" / "synth_small.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="cache for SynthActions-small")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-pas-synth-small"))
    parser.add_argument("--base", type=Path, help="a trained base checkpoint (e.g. the demo's) instead of training one")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pas_synth.json"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()

    manifest = ensure_synthactions(args.data / "synthactions-small", "small")
    reuse = ["base.model=null", "base.train=null", f"base.checkpoint={args.base}"] if args.base else []
    cfg = load_shrink_config(CONFIG, [f"run_dir={args.run_dir}", f"data.train={manifest.annotations['train']}",
                                      f"data.val={manifest.annotations['val']}", "control=true", *reuse,
                                      *args.overrides])
    load_before = machine_load()
    start = time.perf_counter()
    summary = run_search(cfg)
    seconds = time.perf_counter() - start
    load = load_record(load_before, machine_load(), cfg.latency_threads)
    if load["warning"]:
        print(f"warning: {load['warning']}", file=sys.stderr)

    rows = summary["table"]
    base = rows[0]
    steps = []
    for prev, row in zip(rows, rows[1:]):
        steps.append({"model": row["model"], "operator": row["operator"], "gmacs": row["gmacs"],
                      "gmacs_ratio_to_previous": row["gmacs"] / prev["gmacs"], "top1": row["top1"],
                      "top5": row["top5"], "without_pas_top1": row["without_pas_top1"],
                      "pas_minus_control": (row["top1"] - row["without_pas_top1"])
                      if row["without_pas_top1"] is not None else None,
                      "latency_ms": row["latency_ms"],
                      "speedup_vs_base": base["latency_ms"] / row["latency_ms"] if row["latency_ms"] else None})
    result = {
        "benchmark": "pas_synth", "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "config": str(CONFIG), "base_checkpoint": str(args.base) if args.base else None,
        "overrides": args.overrides, "run_dir": str(args.run_dir), "wall_time_s": seconds, "load": load,
        "base": {k: base[k] for k in ("model", "top1", "top5", "gmacs", "params", "latency_ms")},
        "sequence": summary["sequence"], "steps": steps,
        "expectations": {
            "gmacs_roughly_halve": all(0.35 <= s["gmacs_ratio_to_previous"] <= 0.65 for s in steps),
            "pas_beats_control_from_iteration_2": all((s["pas_minus_control"] or 0) > 0 for s in steps[1:]),
            "pas3_at_least_4x_faster": len(steps) >= 3 and (steps[2]["speedup_vs_base"] or 0) >= 4.0,
        },
        "report": summary.get("report"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"steps": steps, "expectations": result["expectations"]}, indent=1))


if __name__ == "__main__":
    main()
