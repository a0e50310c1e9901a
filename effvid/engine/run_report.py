"""``RUN_DIR/report.md``: what a person looks at after ``effvid train``.

The training curves (loss, validation top-1 per epoch) as a PNG, the best and the final
validation metrics, the model's cost at its input (static count; a dynamic model's measured
mean/min/max and dense cost from its last validation), and the confusion matrix of the final
validation as a PNG (single-label data). Written by rank 0 at the end of every run, so a rerun
of a finished run rewrites it from the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effvid.cost.static import count_spec, format_shape
from effvid.report.plots import plot_training_curves, read_metrics
from effvid.report.tables import COST_COLUMNS, markdown_table
from effvid.spec import ArchSpec

REPORT = "report.md"
CURVES_PNG = "training_curves.png"
CONFUSION_PNG = "confusion.png"
METRIC_COLUMNS = [("video_top1", "video top-1"), ("video_top5", "video top-5"), ("clip_top1", "clip top-1"),
                  ("mean_class_acc", "mean class acc"), ("mAP", "mAP")]


def write_run_report(run_dir: Path, *, spec: ArchSpec, best: Mapping[str, Any], final: Mapping[str, Any],
                     dynamic: bool) -> Path:
    """Write ``run_dir/report.md`` (and its training-curves PNG) from ``metrics.jsonl``, the best and
    the final validation metrics; returns its path."""
    records = read_metrics(run_dir / "metrics.jsonl")
    curves = plot_training_curves(records, run_dir / CURVES_PNG, title=spec.name)
    lines = [f"# Training run: {spec.name}", "", f"Run folder `{run_dir}`, {len(records)} epochs.", "",
             f"![training curves]({curves.name})", ""]
    rows = [{"which": f"best (epoch {best.get('epoch', '-')})", **best}] if best else []
    if final:
        rows.append({"which": "final", **final})
    if rows:
        lines += ["Validation (fractions of 1):", "", markdown_table(rows, [("which", ""), *METRIC_COLUMNS]), ""]
    if dynamic and final.get("gmacs_per_view") is not None:
        cost = {key: final[key] for key, _ in COST_COLUMNS}
        lines += ["Cost per view, measured on the final validation (GMACs):", "",
                  markdown_table([cost], COST_COLUMNS), ""]
    elif not dynamic:
        report = count_spec(spec)
        lines += [f"Cost: {report.gmacs:.3f} GMACs per view at input {format_shape(report.input_shape)}, "
                  f"{report.params:,} parameters.", ""]
    if (run_dir / CONFUSION_PNG).exists():
        lines += [f"![confusion matrix of the final validation]({CONFUSION_PNG})", ""]
    path = run_dir / REPORT
    path.write_text("\n".join(lines))
    return path
