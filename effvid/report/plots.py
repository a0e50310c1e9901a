"""Matplotlib plots for run reports (Agg backend, PNG files, no display needed)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


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


def plot_accuracy_vs_gmacs(points: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "Accuracy vs cost",
                           connect: bool = False) -> Path:
    """Top-1 against GMACs per view; each point ``{"label", "gmacs", "top1"}``, joined in order if ``connect``."""
    fig = _figure()
    ax = fig.add_subplot()
    xs, ys = [p["gmacs"] for p in points], [p["top1"] for p in points]
    if connect:
        ax.plot(xs, ys, color="tab:blue", alpha=0.6)
    ax.scatter(xs, ys, color="tab:blue", zorder=3)
    for p in points:
        ax.annotate(str(p["label"]), (p["gmacs"], p["top1"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(title=title, xlabel="GMACs per view", ylabel="top-1")
    ax.grid(alpha=0.3)
    return _save(fig, path)
