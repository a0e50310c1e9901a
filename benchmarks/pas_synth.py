"""PAS benchmark on SynthActions-small (writes JSON; not a test).

Runs PAS from ``configs/pas/synth_small.yaml`` (its 16-frame base R(2+1)D-18 trained first, or an
already trained base given with ``--base``, then 3 iterations of all five operators, every
hypothesis and the without-PAS control at the same 3-epoch recipe) and reports:

1. the selected sequence with GMACs per view at every step and the ratio to the previous step;
2. each PAS-k against the base and against the without-PAS control (same architecture, CE from
   scratch, same budget) on the validation split that selected it, and again on the held-out
   test split (240 more videos that no choice saw);
3. the validation noise: the binomial standard error of a top-1 on n videos,
   ``sqrt(p (1 - p) / n)``, and of a difference of two, ``sqrt(se_1^2 + se_2^2)`` (an upper bound
   for two models scored on the same videos); "ahead by more than the noise" means by more than
   twice that;
4. the measured batch-1 CPU latency of each PAS-k network (its report).

Expected (issue 10), reported either way: PAS-1 within 2 points video top-1 of the base, PAS-2
within 5, PAS ahead of the control by more than the noise at every iteration from 2 on, and each
step's GMACs ratio between 0.4 and 0.6.

    nice .venv/bin/python benchmarks/pas_synth.py [--data data/bench] [--base runs/demo-small/base/checkpoints/best] \
        [--out benchmarks/results/pas_synth.json] [key=value ...]

The 1-minute load average is recorded before and after (``load``): the training runs in parallel
Ray tasks, so a high "after" figure is the benchmark's own work; the latencies are only
quiet-machine figures when nothing else ran.

``key=value`` arguments override the PAS config (e.g. ``train.epochs=1 iterations=2``); the run
directory resumes like ``effvid shrink``.

``--latency-only`` skips the search and measures the paper-scale sequences instead: R(2+1)D-18
at 16x112x112 along [c, f, t, t, t] and SlowFast-4x16-R50 at its 256 test crop along
[c, s, t, s, f] (Table 1), random weights, each network prepared as users run it
(``prepare_for_inference``'s default variant), batch 1 on the CPU with ``--threads`` torch threads.
Per step: GMACs, the median latency over ``--repeats`` rounds that interleave all the steps of
a backbone (order rotating), and the ratio of latency saving to GMACs saving against the
previous step and against the base (1: time falls as much as the MACs; expected at least 0.7
for the first two steps). Writes ``--latency-out``; run it on a quiet machine:

    nice .venv/bin/python benchmarks/pas_synth.py --latency-only [--backbones r2plus1d_18] \
        [--repeats 10] [--warmup 2] [--threads 1] [--latency-out benchmarks/results/pas_latency.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from effvid.cost.latency import CpuWatch, interleaved_runs, load_record, machine_load, saving_ratio, torch_threads
from effvid.cost.static import count_spec, spec_input_shape
from effvid.data.synthetic import ensure_synthactions
from effvid.engine.evaluate import evaluate
from effvid.methods.pas.config import load_shrink_config
from effvid.methods.pas.ledger import Ledger, control_id
from effvid.methods.pas.operators import Reduced, apply_sequence
from effvid.methods.pas.search import run_search
from effvid.models import create_from_spec, default_spec, prepare_for_inference
from effvid.models.inference import DEFAULT_VARIANT
from effvid.spec import ArchSpec

CONFIG = Path(__file__).resolve().parents[1] / "effvid" / "configs" / "pas" / "synth_small.yaml"

TABLE_1_SEQUENCES = {"r2plus1d_18": "c,f,t,t,t", "slowfast_4x16_r50": "c,s,t,s,f"}
"""The sequences PAS selected in the paper (Table 1, Figures 3 and 4), from the registered default specs."""

MIN_SAVING_RATIO = 0.7
"""Latency saving over GMACs saving expected of the first two steps."""


def sequence_specs(name: str, operators: str) -> list[tuple[str, str | None, ArchSpec]]:
    """``(label, operator, spec)`` of ``name``'s default spec and of every step of ``operators``."""
    base = default_spec(name)
    steps: list[tuple[str, str | None, ArchSpec]] = [("base", None, base)]
    for index, result in enumerate(apply_sequence(base, operators), start=1):
        if not isinstance(result, Reduced):
            raise SystemExit(f"{name}: step {index} ({result.operator}) is pruned: {result.reason}")
        steps.append((f"PAS-{index}", result.operators[-1], result.spec))
    return steps


def sequence_latency(name: str, operators: str, *, repeats: int, warmup: int, threads: int) -> dict[str, Any]:
    """Batch-1 CPU latency beside GMACs for every step of ``operators`` on ``name`` (module doc).

    Every step's network is built with random weights and prepared for inference; the steps are
    timed round by round (:func:`interleaved_runs`); each row holds the median, min and max ms.
    """
    steps = sequence_specs(name, operators)
    generator = torch.Generator().manual_seed(0)
    with torch_threads(threads), torch.no_grad():
        models = {label: prepare_for_inference(create_from_spec(spec)) for label, _, spec in steps}
        clips = {label: torch.randn(spec_input_shape(spec), generator=generator) for label, _, spec in steps}
        times = interleaved_runs({label: (lambda m=models[label], c=clips[label]: m(c)) for label in models},
                                 repeats, warmup=warmup)
    rows: list[dict[str, Any]] = []
    for label, operator, spec in steps:
        ms = [t * 1000.0 for t in times[label]]
        rows.append({"model": label, "operator": operator, "input_shape": list(spec_input_shape(spec)),
                     "gmacs": count_spec(spec).gmacs, "latency_ms": statistics.median(ms),
                     "latency_ms_min": min(ms), "latency_ms_max": max(ms)})
    for prev, row in zip(rows, rows[1:]):
        row["saving_ratio_vs_previous"] = saving_ratio(latency=row["latency_ms"], base_latency=prev["latency_ms"],
                                                       gmacs=row["gmacs"], base_gmacs=prev["gmacs"])
        row["saving_ratio_vs_base"] = saving_ratio(latency=row["latency_ms"], base_latency=rows[0]["latency_ms"],
                                                   gmacs=row["gmacs"], base_gmacs=rows[0]["gmacs"])
    first_two = [row["saving_ratio_vs_previous"] for row in rows[1:3]]
    return {"backbone": name, "operators": operators, "steps": rows,
            "first_two_steps_at_least_min_ratio": all(r is not None and r >= MIN_SAVING_RATIO for r in first_two)}


def run_latency(backbones: list[str], *, repeats: int, warmup: int, threads: int, out: Path) -> dict[str, Any]:
    """:func:`sequence_latency` for every backbone, with the machine's load, written to ``out`` as JSON."""
    load_before = machine_load()
    with CpuWatch() as watch:
        results = [sequence_latency(name, TABLE_1_SEQUENCES[name], repeats=repeats, warmup=warmup, threads=threads)
                   for name in backbones]
    load = load_record(load_before, machine_load(), threads, other_cores=watch.other_cores)
    if load["warning"]:
        print(f"warning: {load['warning']}", file=sys.stderr)
    result = {"benchmark": "pas_latency", "machine": {"platform": platform.platform(), "processor": platform.processor()},
              "torch": torch.__version__, "device": "cpu", "batch": 1, "threads": threads, "repeats": repeats,
              "warmup": warmup, "variant": DEFAULT_VARIANT, "weights": "random", "min_saving_ratio": MIN_SAVING_RATIO,
              "load": load, "backbones": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="cache for SynthActions-small")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-pas-synth-small"))
    parser.add_argument("--base", type=Path, help="a trained base checkpoint (e.g. the demo's) instead of training one")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pas_synth.json"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.add_argument("--latency-only", action="store_true",
                        help="skip the search; time the paper-scale Table 1 sequences (module doc)")
    parser.add_argument("--backbones", nargs="+", choices=sorted(TABLE_1_SEQUENCES), default=list(TABLE_1_SEQUENCES))
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (--latency-only)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (--latency-only)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (--latency-only)")
    parser.add_argument("--latency-out", type=Path, default=Path("benchmarks/results/pas_latency.json"))
    args = parser.parse_args()
    if args.latency_only:
        result = run_latency(args.backbones, repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                             out=args.latency_out)
        print(json.dumps(result["backbones"], indent=1))
        return

    print(json.dumps(run_benchmark(args), indent=1))


def binomial_se(p: float, n: int) -> float:
    """The standard error of a top-1 ``p`` measured on ``n`` videos."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def test_top1(checkpoint: str, annotation: Path, views: tuple[int, int]) -> dict[str, float]:
    """Video top-1/top-5 of ``checkpoint`` on ``annotation`` (the held-out split)."""
    result = evaluate(checkpoint, annotation, views=views, batch_size=32, num_workers=0, count_cost=False,
                      device="cpu")
    return {"top1": result.video_top1, "top5": result.video_top5}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) the search, score every reported network on the test split; write and return the JSON."""
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

    ledger = Ledger.in_run_dir(args.run_dir)
    views = tuple(cfg.data.val_views)
    n_val = len(Path(manifest.annotations["val"]).read_text().splitlines())
    test_ann = Path(manifest.annotations["test"])
    n_test = len(test_ann.read_text().splitlines())
    rows = summary["table"]
    base = rows[0]
    base_test = test_top1(ledger.get(base["id"])["checkpoint"], test_ann, views)
    steps = []
    for prev, row in zip(rows, rows[1:]):
        control = ledger.get(control_id(row["iteration"]))
        pas_test = test_top1(ledger.get(row["id"])["checkpoint"], test_ann, views)
        control_test = test_top1(control["checkpoint"], test_ann, views) if control.get("checkpoint") else None
        step = {"model": row["model"], "operator": row["operator"], "gmacs": row["gmacs"],
                "gmacs_ratio_to_previous": row["gmacs"] / prev["gmacs"], "latency_ms": row["latency_ms"]}
        for split, pas, ctrl, ref, n in (("val", row, {"top1": row["without_pas_top1"]}, base, n_val),
                                         ("test", pas_test, control_test, base_test, n_test)):
            gap = (pas["top1"] - ctrl["top1"]) if ctrl and ctrl["top1"] is not None else None
            noise = math.sqrt(binomial_se(pas["top1"], n) ** 2 + binomial_se(ctrl["top1"], n) ** 2) if gap is not None else None
            step[split] = {"top1": pas["top1"], "top5": pas["top5"], "base_minus_pas": ref["top1"] - pas["top1"],
                           "without_pas_top1": ctrl["top1"] if ctrl else None, "pas_minus_control": gap,
                           "difference_se": noise, "ahead_beyond_noise": gap is not None and gap > 2 * noise}
        steps.append(step)

    def holds(split: str) -> dict[str, bool]:
        return {"pas1_within_2_points": len(steps) >= 1 and steps[0][split]["base_minus_pas"] <= 0.02,
                "pas2_within_5_points": len(steps) >= 2 and steps[1][split]["base_minus_pas"] <= 0.05,
                "pas_ahead_of_control_beyond_noise_from_iteration_2": len(steps) >= 2 and all(
                    s[split]["ahead_beyond_noise"] for s in steps[1:])}

    result = {
        "benchmark": "pas_synth", "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "config": str(CONFIG), "base_checkpoint": str(args.base) if args.base else None,
        "overrides": args.overrides, "run_dir": str(args.run_dir), "wall_time_s": seconds, "load": load,
        "videos": {"val": n_val, "test": n_test},
        "base": {**{k: base[k] for k in ("model", "top1", "top5", "gmacs", "params", "latency_ms")},
                 "test": base_test, "top1_se_val": binomial_se(base["top1"], n_val)},
        "sequence": summary["sequence"], "steps": steps,
        "expectations": {
            "gmacs_ratio_between_0.4_and_0.6": all(0.4 <= s["gmacs_ratio_to_previous"] <= 0.6 for s in steps),
            "val": holds("val"), "test": holds("test")},
        "report": summary.get("report"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
