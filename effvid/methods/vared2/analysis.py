"""VA-RED2's analyses: how redundant a network's feature maps are (thesis appendix B.1, Table B.1),
and what a dynamic model decides (thesis Fig. 4-1, B-6 and 4-2).

Both decode every video of a list as one evaluation view (the centre clip and centre crop of
the checkpoint's spec) and run the model in eval mode without gradients.

Redundancy (:func:`redundancy_report`), per convolution (every ``nn.Conv3d`` of the network and
every VA-RED2 dynamic convolution, in module order) and per clip, on the layer's output
``(C, T, H, W)`` min-max scaled to ``[0, 1]`` over the whole map (so RMSEs of different layers
share a scale; the correlation does not depend on it):

* along time, the ``T`` feature maps are the frames (each ``C x H x W`` values); along channels,
  the ``C`` maps are the channels (each ``T x H x W`` values);
* ``cc``: the mean Pearson correlation coefficient over all pairs of maps of that axis (pairs
  with a constant map have none and are left out); ``rmse``: the mean root-mean-squared
  difference over all pairs;
* ``rp``, the redundancy proportion: the fraction of maps flagged redundant, a map being
  redundant when some other map of the axis has a correlation above ``cc_threshold`` (0.85) with it
  and an RMSE above ``rmse_threshold`` (0.001). That is the thesis's wording ("the number of
  tensors with both CC and RMSE above redundancy thresholds of 0.85 and 0.001"); the RMSE floor
  keeps identical maps (an all-zero channel and its copy) out of the count.

The per-layer values are averaged over clips; the summary per axis (Table B.1) is their average
over layers, with the range over clips of each clip's layer average and the clips at its ends
(the most and least redundant, thesis Fig. B-1). An axis with one map (a layer with a single
frame) has no value there (``None``).

Decisions of a dynamic checkpoint (:func:`vared2_report`): per clip, the GMACs it costs and, per
wrapped layer, the ratio of computed features along time (``1 / R``) and channels (``r``). From
them: the mean ratios per layer, overall and per class (Fig. 4-1), the distribution of per-clip
cost (Fig. B-6), and per class its most and least expensive clip (Fig. 4-2), each shown by the
middle frame of its view. Costs are also given as a fraction of the plain network's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from effvid.cost.static import count_cost
from effvid.data.annotations import Annotation, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.engine.checkpoint import load_method_model, load_model, read_sidecar, resolve_checkpoint, sidecar_spec
from effvid.errors import ConfigError
from effvid.io import write_json
from effvid.methods.vared2.conv import DynamicConv3d
from effvid.methods.vared2.model import VARed2
from effvid.report.plots import plot_cost_distribution, plot_frame_grid, plot_layer_ratios, plot_redundancy
from effvid.spec import ArchSpec

AXES = ("temporal", "channel")
METRICS = ("cc", "rmse", "rp")
CC_THRESHOLD = 0.85
RMSE_THRESHOLD = 0.001
_CONSTANT = 1e-12  # a map whose standard deviation (on the [0, 1] scale) is below this is constant


# ---------------------------------------------------------------------------------------------
# data and models


def _dataset(annotation: Annotation, spec: ArchSpec, meta: dict[str, Any], max_videos: int | None) -> VideoDataset:
    """One evaluation view per video of ``annotation`` (its first ``max_videos``), decoded with the
    checkpoint's recorded backend and frame rate."""
    if max_videos is not None:
        annotation = dataclasses.replace(annotation, records=annotation.records[:max_videos])
    transforms = meta.get("transforms") or {}
    return VideoDataset(annotation, spec=spec, train=False, backend=transforms.get("backend", "pyav"),
                        target_fps=transforms.get("target_fps"))


def _batches(dataset: VideoDataset, *, batch_size: int, num_workers: int) -> Iterator[dict[str, Any]]:
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False)
    yield from loader


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode without gradients, its mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def class_names_of(meta: dict[str, Any], annotation: Annotation, num_classes: int) -> list[str]:
    """The checkpoint's class names, else the annotation's, else the indices as names."""
    names = list(meta.get("class_names") or annotation.class_names)
    return names if len(names) == num_classes else [str(k) for k in range(num_classes)]


def display_frame(clip: Tensor, spec: ArchSpec) -> np.ndarray:
    """The middle frame of a normalised clip ``(C, T, H, W)`` as a uint8 ``(H, W, 3)`` image (the
    inverse of the data layer's ``(x / 255 - mean) / std``)."""
    frame = clip[:, clip.shape[1] // 2].detach().float().cpu()
    mean = torch.as_tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)
    pixels = (frame * std + mean) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------
# redundancy


def map_similarity(maps: Tensor, *, cc_threshold: float = CC_THRESHOLD,
                   rmse_threshold: float = RMSE_THRESHOLD) -> dict[str, float] | None:
    """``{"cc", "rmse", "rp"}`` of the ``n`` feature maps ``maps (n, N)`` (module docstring):
    mean pairwise correlation (NaN when every pair has a constant map), mean pairwise RMSE and
    the fraction of maps flagged redundant; ``None`` for fewer than two maps."""
    n, size = maps.shape
    if n < 2:
        return None
    x = maps.to(torch.float64)
    mean = x.mean(1, keepdim=True)
    centred = x - mean
    cov = centred @ centred.T / size
    var = cov.diagonal().clamp_min(0.0)
    rmse = (var[:, None] + var[None, :] - 2 * cov + (mean - mean.T) ** 2).clamp_min(0.0).sqrt()
    std = var.sqrt()
    varies = std > _CONSTANT
    both = varies[:, None] & varies[None, :]
    cc = torch.where(both, cov / (std[:, None] * std[None, :]).clamp_min(_CONSTANT**2), torch.nan)
    rows, cols = torch.triu_indices(n, n, 1)
    pair_cc, pair_rmse = cc[rows, cols], rmse[rows, cols]
    similar = (cc > cc_threshold) & (rmse > rmse_threshold)  # NaN compares false
    similar.fill_diagonal_(False)
    defined = pair_cc[~pair_cc.isnan()]
    return {"cc": float(defined.mean()) if defined.numel() else math.nan, "rmse": float(pair_rmse.mean()),
            "rp": float(similar.any(1).to(torch.float64).mean())}


def feature_redundancy(feature: Tensor, *, cc_threshold: float = CC_THRESHOLD,
                       rmse_threshold: float = RMSE_THRESHOLD) -> dict[str, dict[str, float] | None]:
    """``{"temporal": ..., "channel": ...}`` (:func:`map_similarity`) of one clip's feature map
    ``(C, T, H, W)``, scaled to ``[0, 1]`` first (module docstring)."""
    x = feature.detach().to(torch.float64)
    low, high = x.min(), x.max()
    x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
    channels, frames = x.shape[:2]
    options = {"cc_threshold": cc_threshold, "rmse_threshold": rmse_threshold}
    return {"temporal": map_similarity(x.transpose(0, 1).reshape(frames, -1), **options),
            "channel": map_similarity(x.reshape(channels, -1), **options)}


def _analysed_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The convolutions whose outputs the redundancy analysis reads, by name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv3d, DynamicConv3d))}


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


def redundancy_report(model: nn.Module, dataset: VideoDataset, *, batch_size: int = 8, num_workers: int = 0,
                      cc_threshold: float = CC_THRESHOLD, rmse_threshold: float = RMSE_THRESHOLD) -> dict[str, Any]:
    """The feature redundancy of ``model`` on one view of every video of ``dataset`` (module
    docstring). Returns ``{"num_clips", "thresholds", "layers": [{"layer", "shape" (C, T, H, W),
    "temporal": {cc, rmse, rp} | None, "channel": ...}], "summary": {axis: {cc, rmse, rp,
    "range": {metric: [min, max]}, "most_redundant", "least_redundant"} | None}}``; the clips
    at the ends are ``{"video", "cc"}`` by the clip's layer-averaged correlation. A model
    without a 3D convolution is a :class:`~effvid.errors.ConfigError`."""
    layers = _analysed_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no 3D convolution to analyse; the redundancy analysis "
                          "reads the (C, T, H, W) outputs of 3D clip models")
    shapes: dict[str, tuple[int, ...]] = {}
    # per layer and axis: per clip {metric: value}, NaN where the axis has no value
    values: dict[str, dict[str, list[dict[str, float]]]] = {name: {a: [] for a in AXES} for name in layers}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            shapes[name] = tuple(output.shape[1:])
            for feature in output:
                result = feature_redundancy(feature, cc_threshold=cc_threshold, rmse_threshold=rmse_threshold)
                for axis in AXES:
                    values[name][axis].append(result[axis] or dict.fromkeys(METRICS, math.nan))
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    videos: list[str] = []
    try:
        with _evaluating(model):
            device = _device(model)
            for batch in _batches(dataset, batch_size=batch_size, num_workers=num_workers):
                model(batch["clip"].to(device))
                videos.extend(dataset.records[int(v)].video_id for v in batch["video_index"])
    finally:
        for handle in handles:
            handle.remove()
    ran = [name for name in layers if name in shapes]
    rows = []
    for name in ran:
        row: dict[str, Any] = {"layer": name, "shape": list(shapes[name])}
        for axis in AXES:
            means = {m: _mean([clip[m] for clip in values[name][axis]]) for m in METRICS}
            row[axis] = None if means["rmse"] is None else means
        rows.append(row)
    summary = {axis: _axis_summary(axis, ran, values, videos) for axis in AXES}
    return {"num_clips": len(videos), "thresholds": {"cc": cc_threshold, "rmse": rmse_threshold},
            "layers": rows, "summary": summary}


def _axis_summary(axis: str, layers: Sequence[str], values: dict[str, dict[str, list[dict[str, float]]]],
                  videos: Sequence[str]) -> dict[str, Any] | None:
    """The Table B.1 row of ``axis``: per-layer means averaged over layers, and the range over
    clips of each clip's layer average (module docstring); ``None`` when no layer has the axis."""
    per_clip = {m: [_mean([values[name][axis][i][m] for name in layers]) for i in range(len(videos))]
                for m in METRICS}
    if all(v is None for v in per_clip["rmse"]):
        return None
    layer_means = {m: [_mean([clip[m] for clip in values[name][axis]]) for name in layers] for m in METRICS}
    out: dict[str, Any] = {m: _mean([v for v in layer_means[m] if v is not None]) for m in METRICS}
    out["range"] = {m: [min(v for v in per_clip[m] if v is not None), max(v for v in per_clip[m] if v is not None)]
                    if any(v is not None for v in per_clip[m]) else None for m in METRICS}
    scored = [(v, video) for v, video in zip(per_clip["cc"], videos) if v is not None]
    if scored:
        top, bottom = max(scored), min(scored)
        out["most_redundant"] = {"video": top[1], "cc": top[0]}
        out["least_redundant"] = {"video": bottom[1], "cc": bottom[0]}
    else:
        out["most_redundant"] = out["least_redundant"] = None
    return out


def write_redundancy_report(checkpoint: str | Path, data: str | Path, *, out_dir: str | Path | None = None,
                            root: str | Path | None = None, format: str = "auto", max_videos: int | None = None,
                            batch_size: int = 8, num_workers: int = 0, device: str | torch.device = "cpu",
                            cc_threshold: float = CC_THRESHOLD,
                            rmse_threshold: float = RMSE_THRESHOLD) -> dict[str, Any]:
    """The redundancy report of any 3D checkpoint (plain or VA-RED2) on the videos of ``data``
    (the first ``max_videos``): :func:`redundancy_report` plus ``"checkpoint"``, ``"data"``,
    ``"model"``, ``"png"`` (``redundancy.png``) and ``"json"`` (``redundancy.json``), both written
    to ``out_dir`` (default: the checkpoint's folder). A missing file, an unreadable video or a
    checkpoint that is not ours is an :class:`~effvid.errors.EffvidError` naming it."""
    stem = resolve_checkpoint(checkpoint)
    meta = read_sidecar(stem)
    spec = sidecar_spec(meta, stem)
    annotation = load_annotations(data, root=root, format=format)
    model = load_model(stem, map_location=device)
    report = redundancy_report(model, _dataset(annotation, spec, meta, max_videos), batch_size=batch_size,
                               num_workers=num_workers, cc_threshold=cc_threshold, rmse_threshold=rmse_threshold)
    out = Path(out_dir) if out_dir is not None else stem.parent
    names = [row["layer"] for row in report["layers"]]
    metrics = {axis: {m: [math.nan if row[axis] is None or row[axis][m] is None else row[axis][m]
                          for row in report["layers"]] for m in METRICS} for axis in AXES}
    png = plot_redundancy(names, metrics, out / "redundancy.png",
                          title=f"Feature redundancy of {spec.name} ({report['num_clips']} clips)")
    report = {"checkpoint": str(stem), "data": str(data), "model": spec.name, **report, "png": str(png),
              "json": str(out / "redundancy.json")}
    write_json(out / "redundancy.json", report)
    return report


# ---------------------------------------------------------------------------------------------
# decisions of a dynamic model


def load_vared2(checkpoint: str | Path, *, device: str | torch.device = "cpu") -> tuple[VARed2, dict[str, Any], Path]:
    """``(model, sidecar, stem)`` of a VA-RED2 checkpoint in eval mode on ``device``; a checkpoint
    of another model is a :class:`~effvid.errors.CheckpointError`."""
    model, meta, stem = load_method_model(checkpoint, "vared2", label="VA-RED2", purpose="this report needs a "
                                          "dynamic VA-RED2 model", device=device)
    assert isinstance(model, VARed2)
    return model, meta, stem


def vared2_report(model: VARed2, dataset: VideoDataset, *, class_names: Sequence[str], batch_size: int = 8,
                  num_workers: int = 0) -> dict[str, Any]:
    """What ``model`` decides on one view of every video of ``dataset`` (module docstring).

    Returns ``{"num_clips", "layers" (wrapped layer names), "base_gmacs" (the plain network),
    "dense_gmacs" (every choice at its largest), "gmacs": {mean, min, max}, "clips": [{"video",
    "video_index", "labels", "prediction", "gmacs", "fraction_of_base"}], "per_layer":
    [{"layer", "temporal_ratio", "channel_ratio", "ratio"}] (means over clips), "per_class":
    [{"class", "index", "clips", "gmacs", "temporal_ratio" [per layer], "channel_ratio" [per
    layer]}] (classes with clips; a multi-label clip counts for each of its classes), "extremes":
    [{"class", "index", "most", "least"}] (each a clip entry)}``."""
    clips: list[dict[str, Any]] = []
    temporal: list[np.ndarray] = []
    channel: list[np.ndarray] = []
    ratio: list[np.ndarray] = []
    with _evaluating(model):
        device = _device(model)
        for batch in _batches(dataset, batch_size=batch_size, num_workers=num_workers):
            out = model.forward_output(batch["clip"].to(device))
            assert out.cost is not None
            temporal.extend(out.decisions["temporal_ratio"].cpu().double().numpy())
            channel.extend(out.decisions["channel_ratio"].cpu().double().numpy())
            ratio.extend(out.decisions["ratio"].detach().cpu().double().numpy())
            for video, cost, predicted in zip(batch["video_index"].tolist(), out.cost.tolist(),
                                              out.logits.argmax(1).tolist()):
                record = dataset.records[video]
                labels = [record.label] if isinstance(record.label, int) else list(record.label)
                clips.append({"video": record.video_id, "video_index": video, "labels": labels,
                              "prediction": class_names[predicted], "gmacs": cost})
    base = count_cost(model.spec.replace(method=None)).gmacs
    for clip in clips:
        clip["fraction_of_base"] = clip["gmacs"] / base
    t, c, r = np.stack(temporal), np.stack(channel), np.stack(ratio)
    costs = np.array([clip["gmacs"] for clip in clips])
    per_layer = [{"layer": name, "temporal_ratio": float(t[:, k].mean()), "channel_ratio": float(c[:, k].mean()),
                  "ratio": float(r[:, k].mean())} for k, name in enumerate(model.layer_names)]
    per_class, extremes = [], []
    for index, name in enumerate(class_names):
        rows = [i for i, clip in enumerate(clips) if index in clip["labels"]]
        if not rows:
            continue
        per_class.append({"class": name, "index": index, "clips": len(rows), "gmacs": float(costs[rows].mean()),
                          "temporal_ratio": t[rows].mean(0).tolist(), "channel_ratio": c[rows].mean(0).tolist()})
        most = max(rows, key=lambda i: (costs[i], -i))
        least = min(rows, key=lambda i: (costs[i], i))
        extremes.append({"class": name, "index": index, "most": clips[most], "least": clips[least]})
    return {"num_clips": len(clips), "layers": list(model.layer_names), "base_gmacs": base,
            "dense_gmacs": model.dense_gmacs(),
            "gmacs": {"mean": float(costs.mean()), "min": float(costs.min()), "max": float(costs.max())},
            "clips": clips, "per_layer": per_layer, "per_class": per_class, "extremes": extremes}


def write_vared2_report(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *,
                        root: str | Path | None = None, format: str = "auto", max_videos: int | None = None,
                        figure_classes: int = 20, batch_size: int = 8, num_workers: int = 0,
                        device: str | torch.device = "cpu") -> dict[str, Any]:
    """A VA-RED2 checkpoint's decision report in ``out_dir``: ``layer_ratios.png`` (Fig. 4-1: mean
    ratio of computed features per layer, all clips then each class, temporal and channel),
    ``cost_distribution.png`` (Fig. B-6), ``extremes.png`` (Fig. 4-2: for the first
    ``figure_classes`` classes with clips, the middle frame of the most and the least expensive
    clip) and ``vared2.json`` (:func:`vared2_report`, plus ``"checkpoint"``, ``"data"`` and the
    PNG paths). Returns what ``vared2.json`` holds. A missing file, an unreadable video or a
    checkpoint that is not VA-RED2's is an :class:`~effvid.errors.EffvidError` naming it."""
    model, meta, stem = load_vared2(checkpoint, device=device)
    annotation = load_annotations(data, root=root, format=format)
    names = class_names_of(meta, annotation, model.spec.num_classes)
    dataset = _dataset(annotation, model.spec, meta, max_videos)
    report = vared2_report(model, dataset, class_names=names, batch_size=batch_size, num_workers=num_workers)
    out = Path(out_dir)
    rows = ["all clips", *(row["class"] for row in report["per_class"])]
    ratios = {f"{label} ({symbol})": [[layer[key] for layer in report["per_layer"]],
                                      *(row[key] for row in report["per_class"])]
              for label, symbol, key in (("temporal", "1/R", "temporal_ratio"), ("channel", "r", "channel_ratio"))}
    ratios_png = plot_layer_ratios(ratios, rows, report["layers"], out / "layer_ratios.png",
                                   title=f"VA-RED2 {model.spec.name}: ratio of computed features per layer")
    cost_png = plot_cost_distribution([clip["gmacs"] for clip in report["clips"]], out / "cost_distribution.png",
                                      reference={"base network": report["base_gmacs"]},
                                      title=f"VA-RED2 {model.spec.name}: GMACs per clip")
    shown = report["extremes"][:figure_classes]
    frames, captions = [], []
    for row in shown:
        frames.append([display_frame(dataset[row[end]["video_index"]]["clip"], model.spec) for end in ("most", "least")])
        captions.append([f"{row[end]['gmacs']:.4g} GMACs ({100 * row[end]['fraction_of_base']:.0f}%)"
                         for end in ("most", "least")])
    extremes_png = plot_frame_grid(frames, captions, out / "extremes.png", row_labels=[row["class"] for row in shown],
                                   column_labels=["most expensive", "least expensive"],
                                   title=f"VA-RED2 {model.spec.name}: most and least expensive clip per class")
    report = {"checkpoint": str(stem), "data": str(data), **report, "layer_ratios_png": str(ratios_png),
              "cost_distribution_png": str(cost_png), "extremes_png": str(extremes_png),
              "json": str(out / "vared2.json")}
    write_json(out / "vared2.json", report)
    return report
