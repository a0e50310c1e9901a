"""Every matplotlib figure effvid draws, as PNG files (Agg backend, no display needed).

Training curves of a run, the accuracy-vs-GMACs figure (and PAS's search plot drawn with it),
the confusion matrix of an evaluation, and the per-frame decision figures of a dynamic model
(a strip of sampled frames captioned with their actions, and action usage per class).
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


#: A decision label that starts with this names a skipped frame (AR-Net's ``skip1``, ``skip2``, ...).
SKIP_PREFIX = "skip"


def _is_skip(label: str) -> bool:
    return label.startswith(SKIP_PREFIX)


def plot_decision_strip(frames: Sequence[np.ndarray] | np.ndarray, labels: Sequence[str], path: str | Path, *,
                        title: str) -> Path:
    """AR-Net's Figure 4 as a PNG: the sampled ``frames`` (uint8 ``(H, W, 3)`` each, in time order)
    in one row, each captioned with its ``labels`` entry (the action in force at that frame); a
    frame whose label starts with ``skip`` is drawn dimmed with a grey caption. One label per
    frame, else :class:`ValueError`."""
    if len(frames) != len(labels):
        raise ValueError(f"one label per frame expected, got {len(frames)} frames and {len(labels)} labels")
    count = max(1, len(frames))
    fig = _figure(max(3.0, 1.15 * count), 1.9)
    axes = fig.subplots(1, count, squeeze=False)[0]
    for ax, frame, label in zip(axes, frames, labels):
        image = np.asarray(frame, dtype=np.float32)
        skipped = _is_skip(label)
        if skipped:
            image = 0.3 * image + 0.7 * 200.0
        ax.imshow(np.clip(image, 0, 255).astype(np.uint8))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(label, fontsize=7, color="0.55" if skipped else "black", style="italic" if skipped else "normal")
        for spine in ax.spines.values():
            spine.set_edgecolor("0.75" if skipped else "tab:blue")
            spine.set_linewidth(0.6 if skipped else 1.5)
    for ax in axes[len(frames):]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _action_colours(action_names: Sequence[str]) -> list[Any]:
    """Blues for the resolutions (darkest first, the order AR-Net lists them: highest first),
    oranges for the skips (paler for longer ones)."""
    from matplotlib import colormaps

    chosen = [name for name in action_names if not _is_skip(name)]
    skips = [name for name in action_names if _is_skip(name)]
    blues, oranges = colormaps["Blues"], colormaps["Oranges"]
    shade = {name: blues(0.9 - 0.6 * i / max(1, len(chosen) - 1)) for i, name in enumerate(chosen)}
    shade.update({name: oranges(0.7 - 0.45 * i / max(1, len(skips) - 1)) for i, name in enumerate(skips)})
    return [shade[name] for name in action_names]


def plot_action_usage(usage: Sequence[Sequence[float]] | np.ndarray, class_names: Sequence[str],
                      action_names: Sequence[str], path: str | Path, *, title: str = "Action usage per class") -> Path:
    """Per-class action usage as a PNG of stacked horizontal bars: ``usage`` is ``(classes,
    actions)`` rates (each row the fraction of that class's frames given each action, summing to
    1), one bar per entry of ``class_names`` (first at the top), one colour per entry of
    ``action_names`` (resolutions in blues, ``skip`` actions in oranges). A shape that does not
    match the names is a :class:`ValueError`."""
    rates = np.asarray(usage, dtype=np.float64)
    if rates.shape != (len(class_names), len(action_names)):
        raise ValueError(f"usage of shape (classes, actions) = ({len(class_names)}, {len(action_names)}) expected, "
                         f"got {np.asarray(usage).shape}")
    fig = _figure(7.0, 1.2 + 0.28 * max(1, len(class_names)))
    ax = fig.add_subplot()
    rows = np.arange(len(class_names))
    left = np.zeros(len(class_names))
    for column, (name, colour) in enumerate(zip(action_names, _action_colours(action_names))):
        ax.barh(rows, rates[:, column], left=left, color=colour, label=name, edgecolor="white", linewidth=0.4)
        left += rates[:, column]
    ax.set_yticks(rows, list(class_names), fontsize=7)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="fraction of sampled frames", xlim=(0.0, 1.0))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)
