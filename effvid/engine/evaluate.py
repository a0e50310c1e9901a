"""Multi-view evaluation of a video classifier, with its cost and measured throughput.

Each video is seen as ``K`` temporal clips x ``C`` spatial crops; the views' softmax
probabilities are averaged per video (:mod:`effvid.engine.metrics` defines every metric).

Cost, in GMACs at the spec's input shape, for every model the same way: per view the mean,
min and max over the views evaluated (``gmacs_per_view``, ``_min``, ``_max``), per video the
same over videos (the sum of a video's views), and the dense cost (every decision at its
largest: ``dense_gmacs_per_view``, ``dense_gmacs_per_video``). A static network's cost is
its static count (:func:`effvid.cost.static.count_cost`), so the four agree; a dynamic
network reports each view's cost from its decisions (:class:`~effvid.models.base.ModelOutput`)
and its dense cost through ``dense_gmacs()``. ``clips_per_second`` is views divided by the
time spent in the model's forward passes (decoding excluded), measured on the device the
model sits on.

Unreadable videos: with ``on_error="raise"`` the first one stops the evaluation with its
:class:`~effvid.errors.VideoError` (one line: file and reason). With ``on_error="skip"`` each
video with a view that cannot be read is logged once (a warning naming file and reason) and
left out of every metric and cost figure; nothing is substituted for it. ``num_videos`` counts
the videos evaluated and ``skipped_videos`` the ones left out; ``video_probs`` row ``i`` is
annotation record ``video_indices[i]``. If no video can be read, an
:class:`~effvid.errors.EffvidError` names the annotation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from effvid.cost.static import count_cost as count_static
from effvid.cost.static import spec_input_shape
from effvid.data.annotations import Annotation, load_annotations
from effvid.data.dataset import VideoDataset, build_loader
from effvid.engine.checkpoint import load_model, read_sidecar
from effvid.engine.metrics import confusion_matrix, multiview_metrics
from effvid.errors import ConfigError, EffvidError
from effvid.models.base import is_dynamic, model_output
from effvid.report.plots import plot_confusion_matrix
from effvid.spec import ArchSpec

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Metrics of one evaluation; ``video_probs`` (V, K) is kept for callers that want it."""

    clip_top1: float
    video_top1: float
    video_top5: float
    mean_class_acc: float | None
    mAP: float
    gmacs_per_view: float
    gmacs_per_video: float
    views: tuple[int, int]
    params: int
    clips_per_second: float
    num_videos: int
    input_shape: tuple[int, ...] = ()
    confusion_png: str | None = None
    cost: dict[str, float] = field(default_factory=dict)
    dynamic: bool = False
    video_probs: torch.Tensor | None = field(default=None, repr=False)
    video_targets: torch.Tensor | None = field(default=None, repr=False)
    skipped_videos: int = 0  # unreadable videos left out under on_error="skip"
    video_indices: torch.Tensor | None = field(default=None, repr=False)  # annotation record of each row

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a JSON-ready dict (without the per-video probabilities); ``cost``'s
        keys (:data:`COST_KEYS`) sit at the top level."""
        return {"clip_top1": self.clip_top1, "video_top1": self.video_top1, "video_top5": self.video_top5,
                "mean_class_acc": self.mean_class_acc, "mAP": self.mAP, **self.cost, "views": list(self.views),
                "params": self.params, "clips_per_second": self.clips_per_second, "num_videos": self.num_videos,
                "skipped_videos": self.skipped_videos, "input_shape": list(self.input_shape), "dynamic": self.dynamic, "confusion_png": self.confusion_png}


COST_KEYS = ("gmacs_per_view", "gmacs_per_view_min", "gmacs_per_view_max", "dense_gmacs_per_view",
             "gmacs_per_video", "gmacs_per_video_min", "gmacs_per_video_max", "dense_gmacs_per_video")
"""The cost figures every evaluation and prediction reports (module docstring)."""


def cost_summary(view_gmacs: torch.Tensor, video_index: torch.Tensor, *, dense_gmacs: float,
                 views_per_video: int) -> dict[str, float]:
    """The :data:`COST_KEYS` from each evaluated view's GMACs and the video it belongs to."""
    view_gmacs = view_gmacs.double()
    index = video_index.long()
    per_video = torch.zeros(int(index.max()) + 1, dtype=torch.float64).index_add_(0, index, view_gmacs)
    return {"gmacs_per_view": float(view_gmacs.mean()), "gmacs_per_view_min": float(view_gmacs.min()),
            "gmacs_per_view_max": float(view_gmacs.max()), "dense_gmacs_per_view": float(dense_gmacs),
            "gmacs_per_video": float(per_video.mean()), "gmacs_per_video_min": float(per_video.min()),
            "gmacs_per_video_max": float(per_video.max()),
            "dense_gmacs_per_video": float(dense_gmacs) * views_per_video}


def static_cost_summary(gmacs: float, views_per_video: int) -> dict[str, float]:
    """The :data:`COST_KEYS` of a static network of ``gmacs`` per view: every figure agrees."""
    per_video = gmacs * views_per_video
    return {"gmacs_per_view": gmacs, "gmacs_per_view_min": gmacs, "gmacs_per_view_max": gmacs,
            "dense_gmacs_per_view": gmacs, "gmacs_per_video": per_video, "gmacs_per_video_min": per_video,
            "gmacs_per_video_max": per_video, "dense_gmacs_per_video": per_video}


def parse_views(text: str) -> tuple[int, int]:
    """``"KxC"`` (e.g. ``"10x3"``) as ``(K, C)``; a :class:`ConfigError` for anything else."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"views {text!r}: expected KxC, e.g. 1x1 or 10x3 (K clips x C crops)")
    clips, crops = int(parts[0]), int(parts[1])
    if clips < 1 or crops not in (1, 3):
        raise ConfigError(f"views {text!r}: K must be >= 1 and C must be 1 or 3")
    return clips, crops


def resolve_model(model_or_checkpoint: nn.Module | str | Path, device: str | torch.device = "cpu"
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """``(model, sidecar)``: a checkpoint is loaded (eval mode) with its sidecar; a module is used as is."""
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint, {}

    return load_model(model_or_checkpoint, map_location=device), read_sidecar(model_or_checkpoint)


def evaluate(model_or_checkpoint: nn.Module | str | Path, annotation: str | Path | Annotation, *,
             root: str | Path | None = None, format: str = "auto", views: tuple[int, int] = (1, 1),
             batch_size: int = 8, num_workers: int = 2, backend: str = "pyav", spec: ArchSpec | None = None,
             target_fps: float | None = None, confusion_png: str | Path | None = None,
             count_cost: bool = True, progress: bool = False,
             on_error: Literal["raise", "skip"] = "raise") -> EvalResult:
    """Evaluate a model (or an effvid checkpoint) on every video of ``annotation`` with ``views``.

    ``spec`` (default: the model's) sets the input geometry. The model's train/eval mode is
    restored afterwards. A label outside the model's classes is a :class:`ConfigError`.
    ``on_error`` says what an unreadable video does (module docstring).
    """

    model, meta = resolve_model(model_or_checkpoint)
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("evaluate: the model has no ArchSpec ('spec'); pass spec=")
    if not isinstance(annotation, Annotation):
        annotation = load_annotations(annotation, root=root, format=format, subset="test")
    clips, crops = views
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, num_clips=clips, num_crops=crops,
                           target_fps=target_fps, on_error=on_error)
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False)
    device = next(model.parameters()).device
    logits, targets, video_index, view_index, costs = [], [], [], [], []
    unreadable: dict[int, str] = {}  # video -> the error of its first unreadable view
    forward_s = 0.0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in _progress(loader, progress):
                valid = batch["valid"]
                for video, error in zip(batch["video_index"][~valid].tolist(),
                                        (e for e, ok in zip(batch["error"], valid.tolist()) if not ok)):
                    if video not in unreadable:
                        unreadable[video] = error
                        log.warning("evaluation skips unreadable video %s", error)
                if not bool(valid.any()):
                    continue
                clip = to_device(batch["clip"][valid], device)
                start = time.perf_counter()
                out = model_output(model, clip)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                forward_s += time.perf_counter() - start
                logits.append(out.logits.float().cpu())
                if out.cost is not None:
                    costs.append(out.cost.double().cpu())
                targets.append(batch["label"][valid])
                video_index.append(batch["video_index"][valid])
                view_index.append(batch["view_index"][valid])
    finally:
        model.train(was_training)
        # Workers are freed now, not with the traceback of an error (which keeps this frame).
        loader = None  # noqa: F841
    if unreadable and len(unreadable) == len(annotation.records):
        raise EffvidError(f"{annotation.source or 'the annotation'}: on_error=skip: none of its "
                          f"{len(annotation.records)} videos could be read (first: {unreadable[min(unreadable)]})")
    all_logits, all_targets = torch.cat(logits), torch.cat(targets)
    views_run = len(all_logits)
    all_videos, all_views = torch.cat(video_index), torch.cat(view_index)
    # A video with any unreadable view is left out whole; the rest are renumbered 0..n-1 in order.
    kept = ~torch.isin(all_videos, torch.tensor(sorted(unreadable), dtype=all_videos.dtype))
    video_indices, rows = torch.unique(all_videos[kept], sorted=True, return_inverse=True)
    all_logits, all_targets, all_views = all_logits[kept], all_targets[kept], all_views[kept]
    metrics = multiview_metrics(all_logits, all_targets, rows, all_views,
                                num_clips=clips, num_crops=crops, multilabel=annotation.multilabel)
    png = None
    if confusion_png is not None:
        if annotation.multilabel:
            raise ConfigError("a confusion matrix needs single-label data")
        matrix = confusion_matrix(metrics["video_probs"], metrics["video_targets"])
        names = annotation.class_names if len(annotation.class_names) == spec.num_classes else meta.get("class_names", [])
        png = str(plot_confusion_matrix(matrix, names or [str(i) for i in range(spec.num_classes)], confusion_png))
    shape = spec_input_shape(spec)
    if costs:
        cost = cost_summary(torch.cat(costs)[kept], rows, dense_gmacs=model.dense_gmacs(),
                            views_per_video=clips * crops)
    elif count_cost:
        cost = static_cost_summary(count_static(model, shape).gmacs, clips * crops)
    else:
        cost = {}
    return EvalResult(
        clip_top1=metrics["clip_top1"], video_top1=metrics["video_top1"], video_top5=metrics["video_top5"],
        mean_class_acc=metrics["mean_class_accuracy"], mAP=metrics["mAP"],
        gmacs_per_view=cost.get("gmacs_per_view", float("nan")),
        gmacs_per_video=cost.get("gmacs_per_video", float("nan")), views=(clips, crops),
        params=sum(p.numel() for p in model.parameters()),
        clips_per_second=views_run / forward_s if forward_s > 0 else float("nan"),
        num_videos=metrics["num_videos"], input_shape=tuple(shape), confusion_png=png, cost=cost,
        dynamic=is_dynamic(model), video_probs=metrics["video_probs"], video_targets=metrics["video_targets"],
        skipped_videos=len(unreadable), video_indices=video_indices)


def to_device(clip: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A clip batch moved to ``device`` (without waiting, from pinned memory)."""
    return clip.to(device, non_blocking=True)


def _progress(loader: Any, enabled: bool) -> Any:
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
