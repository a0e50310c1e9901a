"""Every matplotlib figure effvid draws, as PNG files (Agg backend, no display needed).

Training curves of a run, the accuracy-vs-GMACs figure (and PAS's search plot drawn with it),
the confusion matrix of an evaluation, the per-frame decision figures of a dynamic model
(a strip of sampled frames captioned with their actions, and action usage per class), and
VA-RED2's figures: feature redundancy per layer, the ratio of computed features per layer and
class, the distribution of per-clip cost, and a grid of captioned clip frames; D-STEP's Figure 3
(frames under a heat map of their per-tile computation) and its channel decision rates per block.
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
    return _accuracy_figure(path, groups, lines, title=title, xlabel="GMACs per view", log_x=log_gmacs)


def _accuracy_figure(path: str | Path, groups: Sequence[Series], lines: Sequence[Series], *, title: str, xlabel: str,
                     log_x: bool = False) -> Path:
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    for group in groups:
        ax.scatter([x for x, _ in group.points], [y for _, y in group.points], marker=group.marker,
                   color=group.color, label=group.label, zorder=3)
    for line in lines:
        ax.plot([x for x, _ in line.points], [y for _, y in line.points], linestyle="--", marker=line.marker,
                color=line.color, label=line.label, zorder=4)
    if log_x:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="top-1 (%)")
    ax.grid(alpha=0.3)
    if groups or lines:
        ax.legend(fontsize=8)
    return _save(fig, path)


#: PAS operator -> marker in the search plot (input size, clip length, frame rate, channels, layers).
PAS_MARKERS = {"s": "o", "t": "s", "f": "^", "c": "D", "l": "v"}


def plot_search(summary: Mapping[str, Any], path: str | Path) -> Path:
    """PAS's accuracy-vs-cost plot of a report summary (``effvid.methods.pas.report.summarise``):
    every trained hypothesis, one marker per operator, the selected path and, when trained, the
    without-PAS control path; GMACs on a log scale once the path has a point."""
    groups, lines = _search_series(summary, lambda _, entry: entry["gmacs"])
    return plot_accuracy_vs_gmacs(path, groups=groups, lines=lines, title=f"PAS on {summary['name']}",
                                  log_gmacs=any(line.label == "PAS (selected)" for line in lines))


def plot_search_iterations(summary: Mapping[str, Any], path: str | Path) -> Path:
    """PAS's Figure 3 of a report summary: top-1 (%) of every trained hypothesis at every
    iteration (one marker per operator; iteration 0 is the base), the selected path as a red
    dashed line and, when trained, the without-PAS control as a blue one."""
    groups, lines = _search_series(summary, lambda iteration, _: iteration)
    return _accuracy_figure(path, groups, lines, title=f"PAS on {summary['name']}: top-1 per iteration",
                            xlabel="PAS iteration (0: base)")


def _search_series(summary: Mapping[str, Any], x: Any) -> tuple[list[Series], list[Series]]:
    """The hypotheses (one group per operator) and the selected and control paths of a PAS
    summary, each point at ``x(iteration, entry)`` and its top-1 in percent."""
    by_operator: dict[str, list[tuple[float, float]]] = {}
    for iteration in summary["iterations"]:
        for h in iteration["hypotheses"]:
            if h["status"] == "done":
                by_operator.setdefault(h["operator"], []).append((x(iteration["iteration"], h), 100 * h["top1"]))
    groups = [Series(f"epsilon_{op}", points, marker=PAS_MARKERS.get(op, "o"), color="0.45")
              for op, points in by_operator.items()]
    selected = [(x(r["iteration"], r), 100 * r["top1"]) for r in summary["table"] if r["top1"] is not None]
    control = [(x(r["iteration"], r), 100 * r["without_pas_top1"]) for r in summary["table"]
               if r["without_pas_top1"] is not None]
    lines = [Series(label, points, color=color) for label, points, color in (
        ("PAS (selected)", selected, "tab:red"), ("without PAS (CE from scratch)", control, "tab:blue")) if points]
    return groups, lines


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


#: Line colour of each redundancy axis in :func:`plot_redundancy`.
_AXIS_COLOURS = {"temporal": "tab:blue", "channel": "tab:orange"}


def plot_redundancy(layer_names: Sequence[str], metrics: Mapping[str, Mapping[str, Sequence[float]]],
                    path: str | Path, *, title: str = "Feature redundancy per layer") -> Path:
    """Feature redundancy per layer as a PNG of three panels (correlation coefficient, RMSE,
    redundancy proportion), each with one line per axis: ``metrics[axis][metric]`` holds one
    value per entry of ``layer_names`` for ``axis`` in ``temporal``/``channel`` and ``metric``
    in ``cc``/``rmse``/``rp``; NaN (a layer with a single frame, say) leaves a gap. A length that
    does not match the layers is a :class:`ValueError`."""
    panels = (("cc", "correlation coefficient"), ("rmse", "RMSE"), ("rp", "redundancy proportion"))
    for axis, values in metrics.items():
        for metric, _ in panels:
            if len(values[metric]) != len(layer_names):
                raise ValueError(f"{axis} {metric}: one value per layer expected ({len(layer_names)}), "
                                 f"got {len(values[metric])}")
    fig = _figure(max(6.0, min(0.18 * len(layer_names), 30.0)), 7.0)
    axes = fig.subplots(3, 1, sharex=True)
    index = np.arange(len(layer_names))
    for ax, (metric, label) in zip(axes, panels):
        for axis, values in metrics.items():
            ax.plot(index, np.asarray(values[metric], dtype=np.float64), marker=".", label=axis,
                    color=_AXIS_COLOURS.get(axis))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    axes[0].legend(fontsize=8)
    if len(layer_names) <= 80:
        axes[-1].set_xticks(index, list(layer_names), rotation=90, fontsize=6)
    else:
        axes[-1].set_xlabel("layer (execution order)")
    return _save(fig, path)


def plot_layer_ratios(ratios: Mapping[str, Sequence[Sequence[float]] | np.ndarray], row_names: Sequence[str],
                      layer_names: Sequence[str], path: str | Path, *,
                      title: str = "Ratio of computed features per layer") -> Path:
    """VA-RED2's Fig. 4-1 as a PNG: one heat map per entry of ``ratios`` (a panel title, e.g.
    the temporal or channel policy, to a ``(rows, layers)`` array of ratios in ``[0, 1]``), rows
    named by ``row_names`` (classes, say), columns by ``layer_names``; darker is more computed.
    Names up to 60 rows and 80 layers label the axes. A shape that does not match the names is
    a :class:`ValueError`."""
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in ratios.items()}
    for name, values in arrays.items():
        if values.shape != (len(row_names), len(layer_names)):
            raise ValueError(f"{name}: ratios of shape (rows, layers) = ({len(row_names)}, {len(layer_names)}) "
                             f"expected, got {values.shape}")
    height = min(1.5 + 0.22 * len(row_names), 30.0)
    fig = _figure(max(6.0, min(0.2 * len(layer_names) + 2.0, 30.0)), height * max(1, len(arrays)))
    axes = fig.subplots(max(1, len(arrays)), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, arrays.items()):
        image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
        ax.set_title(name, fontsize=9)
        if len(row_names) <= 60:
            ax.set_yticks(range(len(row_names)), list(row_names), fontsize=6)
        if len(layer_names) <= 80:
            ax.set_xticks(range(len(layer_names)), list(layer_names), rotation=90, fontsize=5)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_cost_distribution(gmacs: Sequence[float] | np.ndarray, path: str | Path, *, bins: int = 10,
                           reference: Mapping[str, float] | None = None,
                           title: str = "Per-clip cost") -> Path:
    """VA-RED2's Fig. B-6 as a PNG: a histogram of per-clip ``gmacs`` in ``bins`` equal bins,
    each bar labelled with its share of the clips (percent), and a dashed vertical line per
    entry of ``reference`` (a label to GMACs, e.g. the base network's cost). No clips is a
    :class:`ValueError`."""
    values = np.asarray(gmacs, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("a cost distribution needs at least one clip")
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot()
    low, high = float(values.min()), float(values.max())
    span = (low - 0.5e-3 * max(abs(low), 1e-9), high + 0.5e-3 * max(abs(high), 1e-9)) if low == high else (low, high)
    counts, edges, bars = ax.hist(values, bins=bins, range=span, color="tab:blue", edgecolor="white")
    for count, bar in zip(counts, bars):
        if count:
            ax.annotate(f"{100 * count / values.size:.1f}%", (bar.get_x() + bar.get_width() / 2, count),
                        ha="center", va="bottom", fontsize=7)
    for (label, value), colour in zip((reference or {}).items(), ("tab:red", "tab:green", "tab:purple", "0.4")):
        ax.axvline(value, linestyle="--", color=colour, label=f"{label}: {value:.4g}")
    if reference:
        ax.legend(fontsize=8)
    ax.set(title=f"{title} ({values.size} clips; mean {values.mean():.4g}, min {low:.4g}, max {high:.4g})",
           xlabel="GMACs per clip", ylabel="clips")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def plot_frame_grid(frames: Sequence[Sequence[np.ndarray]], captions: Sequence[Sequence[str]], path: str | Path, *,
                    row_labels: Sequence[str] = (), column_labels: Sequence[str] = (),
                    title: str = "") -> Path:
    """A grid of frames as a PNG (VA-RED2's Fig. 4-2: per class, the most and the least expensive
    clip): ``frames[r][c]`` a uint8 ``(H, W, 3)`` image captioned ``captions[r][c]``; rows may be
    named by ``row_labels`` and columns by ``column_labels``. Captions not shaped like the
    frames, or no frames, are a :class:`ValueError`."""
    if not frames or any(len(row) != len(caps) for row, caps in zip(frames, captions)) or len(frames) != len(captions):
        raise ValueError("one caption per frame, and at least one row of frames, expected")
    rows, cols = len(frames), max(len(row) for row in frames)
    fig = _figure(max(3.0, 1.9 * cols + 1.0), 1.9 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(frames[r]):
                ax.set_axis_off()
                continue
            ax.imshow(np.asarray(frames[r][c], dtype=np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(captions[r][c], fontsize=7)
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0 and c < len(column_labels):
                ax.set_title(column_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_computation_maps(frames: Sequence[np.ndarray] | np.ndarray, maps: Sequence[np.ndarray] | np.ndarray,
                          path: str | Path, *, captions: Sequence[str] = (), title: str = "") -> Path:
    """D-STEP's Figure 3 as a PNG: the sampled ``frames`` (uint8 ``(H, W, 3)`` each, in time order)
    in one row, each under its ``maps`` entry (``(H, W)``, the fraction of the dense computation
    spent at each pixel, in ``[0, 1]``) drawn as a translucent heat map with a shared colour bar;
    each frame may be captioned by ``captions``. One map of a frame's size per frame, else
    :class:`ValueError`."""
    heat = [np.asarray(m, dtype=np.float64) for m in maps]
    if len(frames) != len(heat) or any(h.shape != np.asarray(f).shape[:2] for f, h in zip(frames, heat)):
        raise ValueError(f"one (H, W) map per (H, W, 3) frame expected, got {len(frames)} frames and "
                         f"{len(heat)} maps of shapes {[h.shape for h in heat]}")
    count = max(1, len(frames))
    fig = _figure(max(4.5, 1.3 * count + 0.8), 2.4)
    axes = fig.subplots(1, count, squeeze=False)[0]
    image = None
    for i, (ax, frame, values) in enumerate(zip(axes, frames, heat)):
        ax.imshow(np.asarray(frame, dtype=np.uint8))
        image = ax.imshow(values, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(captions):
            ax.set_xlabel(captions[i], fontsize=7)
    for ax in axes[len(frames):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=list(axes), fraction=0.02, pad=0.01).ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)  # no tight_layout: it cannot place a colour bar shared by a row of images
    return path


#: Bar colour of each channel decision in :func:`plot_channel_decisions`.
_DECISION_COLOURS = {"skip": "tab:orange", "reuse": "tab:green", "compute": "tab:blue"}


def plot_channel_decisions(rates: Sequence[Sequence[float]] | np.ndarray, block_names: Sequence[str],
                           action_names: Sequence[str], path: str | Path, *,
                           title: str = "Channel decisions per block") -> Path:
    """Per-block channel decision rates as a PNG of stacked horizontal bars: ``rates`` is
    ``(blocks, actions)`` (each row the fraction of a block's channel decisions given each
    action, summing to 1), one bar per entry of ``block_names`` (first at the top), one colour
    per entry of ``action_names`` (skip orange, reuse green, compute blue). A shape that does
    not match the names is a :class:`ValueError`."""
    values = np.asarray(rates, dtype=np.float64)
    if values.shape != (len(block_names), len(action_names)):
        raise ValueError(f"rates of shape (blocks, actions) = ({len(block_names)}, {len(action_names)}) expected, "
                         f"got {np.asarray(rates).shape}")
    fig = _figure(7.0, 1.2 + 0.28 * max(1, len(block_names)))
    ax = fig.add_subplot()
    rows = np.arange(len(block_names))
    left = np.zeros(len(block_names))
    for column, name in enumerate(action_names):
        ax.barh(rows, values[:, column], left=left, color=_DECISION_COLOURS.get(name), label=name,
                edgecolor="white", linewidth=0.4)
        left += values[:, column]
    ax.set_yticks(rows, list(block_names), fontsize=7)
    ax.invert_yaxis()
    ax.set(title=title, xlabel="fraction of channel decisions (channels x frames)", xlim=(0.0, 1.0))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)
