"""The PAS report: ``report.md``, ``report.json`` and ``accuracy_vs_gmacs.png`` from a run's ledger.

* a Table-1-style table: the base and each PAS-k network with top-1, top-5 (percent), GMACs per
  view x views, parameters, measured CPU latency at batch 1, and the without-PAS control's top-1
  when it was trained (Table 2);
* every hypothesis of every iteration with its status, initialisation, cost, cost ratio to
  R_{tau-1} and accuracy, pruned ones with their reason (the data of Fig. 3);
* the selected sequence of operators and the rule that chose each step;
* a Fig.-3-style plot: top-1 against GMACs per view, one marker per operator, the selected path
  and the control path.

Latencies are measured once and kept in the ledger (``latency_ms``), so rewriting the report
is quick. ``effvid shrink report RUN_DIR`` rewrites it from the ledger alone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effvid.cost.latency import cpu_latency_ms
from effvid.errors import ConfigError
from effvid.methods.pas.ledger import BASE_ID, LEDGER_FILE, Ledger, ablation_rows, control_id
from effvid.report.plots import plot_search, plot_search_iterations
from effvid.report.tables import markdown_table
from effvid.spec import ArchSpec

logger = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "accuracy_vs_gmacs.png"
REPORT_ITERATIONS_PNG = "top1_per_iteration.png"


def summarise(ledger: Ledger) -> dict[str, Any]:
    """The report's content as a JSON-ready dict (no files written, nothing measured)."""
    config = ledger.meta.get("config", {})
    views_kc = config.get("data", {}).get("val_views", [1, 1])
    views = int(views_kc[0]) * int(views_kc[1])
    base = ledger.get(BASE_ID)
    name = config.get("name") or ((base or {}).get("spec") or {}).get("name") or "base"
    selections = {s["iteration"]: s for s in ledger.selections}
    table = []
    if base is not None and base["status"] == "done":
        table.append(_row(name, 0, base, views, None))
    for iteration, selection in sorted(selections.items()):
        chosen = ledger.get(selection["id"])
        control = ledger.get(control_id(iteration))
        table.append(_row(f"{name}-PAS-{iteration}", iteration, chosen, views, control))
    iterations = []
    for iteration in sorted({e["iteration"] for e in ledger.of_kind("hypothesis")}):
        selection = selections.get(iteration)
        ratios = (selection or {}).get("scores", {}).get("ratios", {})
        hypotheses = [{"id": e["id"], "operator": e["operator"], "status": e["status"], "init": e.get("init"),
                       "gmacs": e.get("gmacs"), "params": e.get("params"), "cost_ratio": ratios.get(e["id"]),
                       "top1": e.get("top1"), "top5": e.get("top5"), "attempts": e.get("attempts"),
                       "wall_time_s": e.get("wall_time_s"), "reason": e.get("reason"), "error": e.get("error"),
                       "selected": selection is not None and selection["id"] == e["id"]}
                      for e in ledger.iteration(iteration)]
        iterations.append({"iteration": iteration, "selected": (selection or {}).get("id"),
                           "rule": (selection or {}).get("rule"), "hypotheses": hypotheses})
    return {
        "run_dir": str(ledger.path.parent),
        "ledger": str(ledger.path),
        "name": name,
        "views": views,
        "latency_threads": int(config.get("latency_threads", 1)),
        "sequence": [ledger.get(s["id"])["operator"] for s in ledger.selections],
        "table": table,
        "iterations": iterations,
        "failed": [e["id"] for e in ledger.with_status(["failed"])],
        "unfinished": [e["id"] for e in ledger.with_status(["pending", "running"])],
        "ablation": ablation_rows(ledger),
    }


def _row(model: str, iteration: int, entry: dict[str, Any], views: int, control: dict[str, Any] | None
         ) -> dict[str, Any]:
    trained = control is not None and control["status"] == "done"
    return {"model": model, "iteration": iteration, "id": entry["id"], "operator": entry.get("operator"),
            "top1": entry.get("top1"), "top5": entry.get("top5"), "gmacs": entry.get("gmacs"), "views": views,
            "params": entry.get("params"), "latency_ms": entry.get("latency_ms"),
            "input_shape": entry.get("input_shape"),
            "without_pas_top1": control.get("top1") if trained else None,
            "without_pas_top5": control.get("top5") if trained else None}


def measure_latencies(ledger: Ledger, *, repeats: int, threads: int, log: Callable[[str], None] = logger.info) -> None:
    """Measure the batch-1 CPU latency of the base and every selected network not measured yet."""

    if repeats < 1:
        return
    entries = [e for e in [ledger.get(BASE_ID), *ledger.selected()] if e is not None and e.get("spec")]
    for entry in entries:
        if entry.get("latency_ms") is None:
            latency = cpu_latency_ms(ArchSpec.from_dict(entry["spec"]), repeats=repeats, threads=threads)
            ledger.update(entry["id"], latency_ms=latency)
            log(f"PAS report: {entry['id']} CPU latency {latency:.1f} ms at batch 1 ({threads} thread(s))")


def write_report(run_dir: str | Path, *, log: Callable[[str], None] = logger.info, measure: bool = True) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and the plot into ``run_dir`` from its ledger; returns the summary."""

    run_dir = Path(run_dir)
    if not (run_dir / LEDGER_FILE).exists():
        raise ConfigError(f"{run_dir}: no {LEDGER_FILE}; not a PAS run directory")
    ledger = Ledger.in_run_dir(run_dir)
    config = ledger.meta.get("config", {})
    if measure:
        measure_latencies(ledger, repeats=int(config.get("latency_repeats", 10)),
                          threads=int(config.get("latency_threads", 1)), log=log)
    summary = summarise(ledger)
    summary["plot"] = str(plot_search(summary, run_dir / REPORT_PNG))
    summary["plot_iterations"] = str(plot_search_iterations(summary, run_dir / REPORT_ITERATIONS_PNG))
    summary["report"] = str(run_dir / REPORT_MD)
    (run_dir / REPORT_MD).write_text(render_markdown(summary))
    (run_dir / REPORT_JSON).write_text(json.dumps(summary, indent=1))
    return summary


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100.0 * value:.1f}"


def _num(value: float | None, digits: int) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table_markdown(summary: dict[str, Any]) -> str:
    """The Table-1-style markdown table of a summary."""

    has_control = any(r["without_pas_top1"] is not None for r in summary["table"])
    rows = [{"model": r["model"], "top1": _pct(r["top1"]), "top5": _pct(r["top5"]),
             "gmacs": f"{_num(r['gmacs'], 3)} x {r['views']}" if r["gmacs"] is not None else None,
             "params": f"{r['params'] / 1e6:.2f}M" if r["params"] is not None else None,
             "latency": _num(r["latency_ms"], 1), "control": _pct(r["without_pas_top1"]),
             "control5": _pct(r.get("without_pas_top5"))}
            for r in summary["table"]]
    threads = summary.get("latency_threads", 1)
    columns = [("model", "model"), ("top1", "top-1 %"), ("top5", "top-5 %"), ("gmacs", "GMACs/view x views"),
               ("params", "params"), ("latency", f"CPU ms (batch 1, {threads} thread{'s' if threads > 1 else ''})")]
    if has_control:
        columns += [("control", "without PAS top-1 %"), ("control5", "without PAS top-5 %")]
    return markdown_table(rows, columns)


def render_markdown(summary: dict[str, Any]) -> str:
    """The whole ``report.md``."""

    sequence = ", ".join(f"epsilon_{op}" for op in summary["sequence"]) or "(none yet)"
    lines = [f"# PAS report: {summary['name']}", "", f"Ledger: `{summary['ledger']}`", "",
             f"Selected sequence: [{sequence}]", "", table_markdown(summary), "",
             "Accuracy in percent on the validation set; GMACs per view x views; latency is the median "
             "CPU forward time at batch 1 of the network prepared as `effvid predict` runs it "
             "(`prepare_for_inference`'s default), random weights.", ""]
    for it in summary["iterations"]:
        rule = {"eq3": "Eq. (3), highest top-1", "eq1": "Eq. (1), cost saved per accuracy lost"}.get(it["rule"], "-")
        lines += [f"## Iteration {it['iteration']}: selected {it['selected'] or '-'} by {rule}", ""]
        rows = [{"sel": "*" if h["selected"] else "", "op": f"epsilon_{h['operator']}", "status": h["status"],
                 "init": h["init"], "gmacs": _num(h["gmacs"], 3), "ratio": _num(h["cost_ratio"], 2),
                 "top1": _pct(h["top1"]), "top5": _pct(h["top5"]), "note": h["reason"] or h["error"] or ""}
                for h in it["hypotheses"]]
        lines += [markdown_table(rows, [("sel", ""), ("op", "operator"), ("status", "status"), ("init", "init"),
                                        ("gmacs", "GMACs/view"), ("ratio", "C(h)/C(R_prev)"), ("top1", "top-1"),
                                        ("top5", "top-5"), ("note", "note")]), ""]
    if summary.get("ablation"):
        lines += _ablation_markdown(summary["ablation"])
    if summary["failed"] or summary["unfinished"]:
        lines += [f"Failed: {', '.join(summary['failed']) or '-'}; unfinished: {', '.join(summary['unfinished']) or '-'}", ""]
    lines += [f"![top-1 per iteration]({REPORT_ITERATIONS_PNG})", "", f"![accuracy vs GMACs]({REPORT_PNG})", ""]
    return "\n".join(lines)


def _ablation_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Table 4: top-1 (percent) of each ablated iteration's input operators with KD and/or fine-tuning removed."""
    lines: list[str] = []
    for iteration in sorted({r["iteration"] for r in rows}):
        of_iteration = [r for r in rows if r["iteration"] == iteration]
        operators = list(of_iteration[0]["operators"])
        table = [{"kd": "yes" if r["kd"] else "no", "finetune": "yes" if r["finetune"] else "no",
                  **{op: _pct(cell["top1"]) for op, cell in r["operators"].items()}} for r in of_iteration]
        lines += [f"## Ablation at iteration {iteration} (Table 4): top-1 %", "",
                  markdown_table(table, [("kd", "KD"), ("finetune", "fine-tuning"),
                                         *[(op, f"epsilon_{op}") for op in operators]]), ""]
    return lines

