"""Every matplotlib figure effvid draws, as PNG files (Agg backend, no display needed).

Training curves of a run, the accuracy-vs-GMACs figure (and PAS's search plot drawn with it),
and the confusion matrix of an evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a run's ``metrics.jsonl`` (lines that do not parse are skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_training_curves(records: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "Training") -> Path:
    """Training loss and validation video top-1 per epoch, from ``metrics.jsonl`` records."""
    fig = _figure(7.0, 3.5)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in records]
    loss_ax.plot(epochs, [r["train"].get("loss", float("nan")) for r in records], marker="o")
    loss_ax.set(title=f"{title}: training loss", xlabel="epoch", ylabel="loss")
    val = [(r["epoch"], r["val"]["video_top1"]) for r in records if r.get("val")]
    if val:
        acc_ax.plot([e for e, _ in val], [a for _, a in val], marker="o", color="tab:green")
    acc_ax.set(title="validation video top-1", xlabel="epoch", ylabel="top-1", ylim=(0.0, 1.0))
    return _save(fig, path)


@dataclass(frozen=True)
class Series:
    """Named points ``(GMACs per view, top-1 in percent)`` of an accuracy-vs-cost figure, drawn as
    a scatter group or a line with ``marker`` in ``color``."""

    label: str
    points: Sequence[tuple[float, float]]
    marker: str = "o"
    color: str = "tab:blue"


def plot_accuracy_vs_gmacs(path: str | Path, *, groups: Sequence[Series] = (), lines: Sequence[Series] = (),
                           title: str = "Accuracy vs cost", log_gmacs: bool = False) -> Path:
    """Top-1 (%) against GMACs per view as a PNG: each of ``groups`` a scatter of its marker,
    each of ``lines`` a dashed line through its points in order (drawn above the groups), one
    legend entry per named series; ``log_gmacs`` puts the cost axis on a log scale."""
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    for group in groups:
        ax.scatter([x for x, _ in group.points], [y for _, y in group.points], marker=group.marker,
                   color=group.color, label=group.label, zorder=3)
    for line in lines:
        ax.plot([x for x, _ in line.points], [y for _, y in line.points], linestyle="--", marker=line.marker,
                color=line.color, label=line.label, zorder=4)
    if log_gmacs:
        ax.set_xscale("log")
    ax.set(title=title, xlabel="GMACs per view", ylabel="top-1 (%)")
    ax.grid(alpha=0.3)
    if groups or lines:
        ax.legend(fontsize=8)
    return _save(fig, path)


#: PAS operator -> marker in the search plot (input size, clip length, frame rate, channels, layers).
PAS_MARKERS = {"s": "o", "t": "s", "f": "^", "c": "D", "l": "v"}


def plot_search(summary: Mapping[str, Any], path: str | Path) -> Path:
    """PAS's Fig.-3-style plot of a report summary (``effvid.methods.pas.report.summarise``):
    every trained hypothesis, one marker per operator, the selected path and, when trained, the
    without-PAS control path; GMACs on a log scale once the path has a point."""
    by_operator: dict[str, list[tuple[float, float]]] = {}
    for iteration in summary["iterations"]:
        for h in iteration["hypotheses"]:
            if h["status"] == "done":
                by_operator.setdefault(h["operator"], []).append((h["gmacs"], 100 * h["top1"]))
    groups = [Series(f"epsilon_{op}", points, marker=PAS_MARKERS.get(op, "o"), color="0.45")
              for op, points in by_operator.items()]
    selected = [(r["gmacs"], 100 * r["top1"]) for r in summary["table"] if r["top1"] is not None]
    control = [(r["gmacs"], 100 * r["without_pas_top1"]) for r in summary["table"]
               if r["without_pas_top1"] is not None]
    lines = [Series(label, points, color=color) for label, points, color in (
        ("PAS (selected)", selected, "tab:red"), ("without PAS (CE from scratch)", control, "tab:blue")) if points]
    return plot_accuracy_vs_gmacs(path, groups=groups, lines=lines, title=f"PAS on {summary['name']}",
                                  log_gmacs=bool(selected))


def plot_confusion_matrix(matrix: torch.Tensor | np.ndarray | Sequence[Sequence[float]], class_names: Sequence[str],
                          path: str | Path, *, normalize: bool = True, title: str = "Confusion matrix") -> Path:
    """``matrix`` (``(K, K)`` counts, rows true, columns predicted; a tensor, an array or nested
    lists) as a PNG heat map, rows normalised to recall if ``normalize``; class names label the
    axes up to 60 classes."""
    values = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1.0)
    k = values.shape[0]
    size = min(2.0 + 0.35 * k, 40.0)
    fig = _figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    if k <= 60:
        ax.set_xticks(range(k), list(class_names), rotation=90, fontsize=7)
        ax.set_yticks(range(k), list(class_names), fontsize=7)
    return _save(fig, path)
