"""Model speed benchmark: CPU latency and throughput of every registered model (writes JSON; not a test).

For each model at its default input (its ArchSpec: T frames, crop), and for each inference
variant of :mod:`effvid.models.inference` (eager, channels_last, torch.compile):

* median batch-1 latency over ``--repeats`` timed runs after a warm-up run;
* median batch-8 throughput (clips/s) over ``--batch-repeats`` timed runs after a warm-up run;
  a model whose batch-8 run takes longer than ``--slow-run-s`` gets a single timed run (the
  JSON records the repeats actually used);
* achieved GMAC/s (cost counter GMACs per clip x clips / s);
* correctness: the variant's batch-1 logits against eager's (max |diff| relative to max |eager|);
* the 1-minute load average before and after the run and each model (``load``), and the cores
  other processes kept busy while a model was timed, with a warning when another process
  competed (a load average above the threads + 0.5, or other processes above a tenth of a
  core): such figures are not quiet-machine figures.

A variant that fails (e.g. torch.compile without a compiler) is recorded with its error, not
raised. torch.compile's build time is recorded separately and excluded from the timings; it
runs only for the models in ``--compile-models`` (three small-to-large representatives by
default; ``all`` or ``none``).

    nice .venv/bin/python benchmarks/model_speed.py [--models r2plus1d_18,x3d_m] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from effvid.cost.latency import CpuWatch, load_record, machine_load, timed_runs
from effvid.cost.static import count_spec
from effvid.models import default_spec, get_entry, list_models
from effvid.models.inference import DEFAULT_VARIANT, VARIANTS, prepare_for_inference
from effvid.models.registry import create_from_spec

TOLERANCE = 1e-3  # max |variant - eager| / max |eager| on the batch-1 logits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--compile-models", default="r2plus1d_18,x3d_xs,mobilenet_v2",
                        help="models to torch.compile: names, 'all' or 'none'")
    parser.add_argument("--repeats", type=int, default=5, help="timed batch-1 runs")
    parser.add_argument("--batch-repeats", type=int, default=3, help="timed batch-8 runs")
    parser.add_argument("--slow-run-s", type=float, default=15.0, help="batch-8 runs slower than this get one timed run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_speed.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    names = list_models() if args.models == "all" else args.models.split(",")
    variants = args.variants.split(",")
    compile_names = set(names if args.compile_models == "all" else [] if args.compile_models == "none"
                        else args.compile_models.split(","))
    results = {
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "platform": platform.platform()},
        "load": load_record(machine_load(), float("nan"), args.threads),
        "settings": {"repeats": args.repeats, "batch_repeats": args.batch_repeats, "slow_run_s": args.slow_run_s,
                     "tolerance": TOLERANCE, "default_variant": DEFAULT_VARIANT},
        "models": [],
    }
    for name in names:
        before = machine_load()
        with CpuWatch() as cpu:
            row = bench_model(name, [v for v in variants if v != "compile" or name in compile_names], args)
        row["load"] = load_record(before, machine_load(), args.threads, other_cores=cpu.other_cores)
        if row["load"]["warning"]:
            print(f"warning: {name}: {row['load']['warning']}", file=sys.stderr)
        results["models"].append(row)
        print(json.dumps(summary_line(row)), file=sys.stderr, flush=True)
        write(results, args.out)
    results["load"] = load_record(results["load"]["load_average_before"], machine_load(), args.threads)
    if results["load"]["warning"]:
        print(f"warning: {results['load']['warning']}", file=sys.stderr)
    results["fastest_counts"] = {v: sum(r.get("fastest_b1") == v for r in results["models"]) for v in variants}
    write(results, args.out)
    return 0


def bench_model(name: str, variants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    spec = default_spec(name)
    cost = count_spec(spec)
    row: dict[str, Any] = {"model": name, "kind": get_entry(name).kind, "input_shape": list(cost.input_shape),
                           "gmacs": cost.gmacs, "params": cost.params, "variants": {}}
    torch.manual_seed(0)
    base = create_from_spec(spec).eval()
    x1 = torch.randn(cost.input_shape)
    x8 = torch.randn(8, *cost.input_shape[1:])
    with torch.no_grad():
        reference = base(x1)
    for variant in variants:
        try:
            row["variants"][variant] = bench_variant(base, variant, x1, x8, reference, cost.gmacs, args)
        except Exception as err:  # a failing variant is a result, not a crash
            row["variants"][variant] = {"error": f"{type(err).__name__}: {err}"[:500]}
    timed = {v: r["latency_b1_ms"] for v, r in row["variants"].items() if r.get("correct")}
    row["fastest_b1"] = min(timed, key=timed.get) if timed else None
    thrpt = {v: r["clips_per_s_b8"] for v, r in row["variants"].items() if r.get("correct")}
    row["fastest_b8"] = max(thrpt, key=thrpt.get) if thrpt else None
    return row


def bench_variant(base, variant, x1, x8, reference, gmacs, args) -> dict[str, Any]:
    start = time.perf_counter()
    model = prepare_for_inference(copy.deepcopy(base), variant=variant)
    out: dict[str, Any] = {}
    with torch.no_grad():
        logits = model(x1)  # warm-up (and the compile, for torch.compile)
        out["build_s_b1"] = time.perf_counter() - start
        error = (logits - reference).abs().max().item() / max(reference.abs().max().item(), 1e-12)
        out["max_rel_error"] = error
        out["correct"] = error <= TOLERANCE
        b1 = timed_runs(lambda: model(x1), args.repeats)
        out["latency_b1_ms"] = statistics.median(b1) * 1000
        out["repeats_b1"] = len(b1)
        start = time.perf_counter()
        model(x8)  # warm-up (recompile for the batch-8 shape)
        warm = time.perf_counter() - start
        repeats = 1 if warm > args.slow_run_s else args.batch_repeats
        b8 = timed_runs(lambda: model(x8), repeats)
        out["clips_per_s_b8"] = 8 / statistics.median(b8)
        out["repeats_b8"] = len(b8)
    out["gmac_per_s_b1"] = gmacs / (out["latency_b1_ms"] / 1000)
    out["gmac_per_s_b8"] = gmacs * out["clips_per_s_b8"]
    return out


def summary_line(row: dict[str, Any]) -> dict[str, Any]:
    line = {"model": row["model"], "gmacs": round(row["gmacs"], 3)}
    for variant, r in row["variants"].items():
        line[variant] = r.get("error", "")[:80] or (round(r["latency_b1_ms"], 1), round(r["clips_per_s_b8"], 2))
    return line


def write(results: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
