"""Multi-view evaluation of a video classifier, with its cost and measured throughput.

Each video is seen as ``K`` temporal clips x ``C`` spatial crops; the views' softmax
probabilities are averaged per video (:mod:`effvid.engine.metrics` defines every metric).
A video is opened once for all its views: each temporal clip is decoded once and its ``C``
crops are cut from the same frames (:meth:`~effvid.data.dataset.VideoDataset.video_item`); the
views are regrouped into forward passes of ``batch_size`` views.

Devices: a module keeps its own device unless ``device`` names one; a checkpoint is loaded onto
``device`` (``"auto"``: CUDA when available). On CUDA the forward passes run under autocast,
bf16 unless ``amp`` says otherwise; on the CPU in float32.

Distributed (under an initialised process group, every rank calling :func:`evaluate`): the
videos are dealt round robin over the ranks (video ``i`` to rank ``i % world``), each rank
evaluates its videos whole (all views), and the per-view logits, targets, indices, costs and
unreadable videos are gathered to every rank (``all_gather_object``), sorted by video and view
as one process would have them, so every rank computes the same metrics as a single process
would; ``clips_per_second`` is the sum of the ranks' rates, and only rank 0 writes the confusion
matrix (and shows a progress bar).

Cost, in GMACs at the spec's input shape, for every model the same way: per view the mean,
min and max over the views evaluated (``gmacs_per_view``, ``_min``, ``_max``), per video the
same over videos (the sum of a video's views), and the dense cost (every decision at its
largest: ``dense_gmacs_per_view``, ``dense_gmacs_per_video``). A static network's cost is
its static count (:func:`effvid.cost.static.count_cost`), so the four agree; a dynamic
network reports each view's cost from its decisions (:class:`~effvid.models.base.ModelOutput`)
and its dense cost through ``dense_gmacs()``. ``clips_per_second`` is views divided by the
time spent in the model's forward passes (decoding excluded), measured on the device the
model runs on (summed over ranks when distributed).

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
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from effvid.cost.static import count_cost as count_static
from effvid.cost.static import spec_input_shape
from effvid.data.annotations import Annotation, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.engine.checkpoint import load_model, read_sidecar
from effvid.engine.metrics import confusion_matrix, multiview_metrics
from effvid.errors import ConfigError, EffvidError
from effvid.models.base import is_dynamic, model_output
from effvid.models.inference import resolve_device
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
    device: str = "cpu"  # where the forward passes ran
    amp: str = "off"  # the autocast dtype: "off", "bf16" or "fp16"
    world_size: int = 1  # processes the videos were sharded over

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
             count_cost: bool = True, progress: bool | None = False,
             on_error: Literal["raise", "skip"] = "raise", device: str | torch.device = "auto",
             amp: Literal["off", "bf16", "fp16"] | None = None, distributed: bool | None = None) -> EvalResult:
    """Evaluate a model (or an effvid checkpoint) on every video of ``annotation`` with ``views``.

    ``spec`` (default: the model's) sets the input geometry. The model's train/eval mode (and
    device) are restored afterwards. A label outside the model's classes is a :class:`ConfigError`.
    ``on_error`` says what an unreadable video does (module docstring). ``batch_size`` is views
    per forward pass; each loaded item is a whole video (all its views, decoded once).
    ``progress``: a tqdm bar (on rank 0); None shows it when stderr is a terminal.

    ``device``: ``"auto"`` keeps a module on its own device and loads a checkpoint onto CUDA
    when available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` move a module there for
    the evaluation. ``amp``: autocast dtype on CUDA, None = ``"bf16"`` there (where the GPU has
    bf16) and off on the CPU, where asking for it evaluates in float32 with a log line.
    ``distributed``: shard the videos over the ranks of the process group (None: when one with
    more than one process is initialised); every rank must call this, and every rank gets the
    same metrics (module docstring).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive number of views, got {batch_size!r}")
    world, rank = _world(distributed)
    dev = resolve_device(device, model_or_checkpoint if isinstance(model_or_checkpoint, nn.Module) else None)
    model, meta = resolve_model(model_or_checkpoint, device=dev)
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module  # its forward would synchronise ranks that run different numbers of batches
    spec = spec or getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("evaluate: the model has no ArchSpec ('spec'); pass spec=")
    amp_dtype = resolve_amp(amp, dev)
    if not isinstance(annotation, Annotation):
        annotation = load_annotations(annotation, root=root, format=format, subset="test")
    clips, crops = views
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, num_clips=clips, num_crops=crops,
                           target_fps=target_fps, on_error=on_error)
    per_video = dataset.views_per_video
    videos = dataset.by_video(range(rank, len(annotation.records), world))  # whole videos, round robin
    loader = build_loader(videos, batch_size=max(1, batch_size // per_video), num_workers=num_workers,
                          shuffle=False, seed=0, drop_last=False, distributed=False)
    show = rank == 0 and (sys.stderr.isatty() if progress is None else bool(progress))
    local = _Collected()
    params = list(model.parameters())
    home = params[0].device if params else dev
    was_training = model.training
    model.eval()
    if home != dev:
        model.to(dev)
    try:
        with torch.no_grad(), _progress(len(videos), show) as bar:
            batcher = _ViewBatcher(batch_size)
            for batch in loader:
                valid = batch["valid"]
                for video, error in zip(batch["video_index"][~valid].tolist(),
                                        (e for e, ok in zip(batch["error"], valid.tolist()) if not ok)):
                    if video not in local.unreadable:
                        local.unreadable[video] = error
                        log.warning("evaluation skips unreadable video %s", error)
                if bool(valid.any()):
                    clip = batch["clip"][valid]  # (B, K * C, C, T, H, W)
                    batcher.add(clip.flatten(0, 1), batch["label"][valid].repeat_interleave(per_video, dim=0),
                                batch["video_index"][valid].repeat_interleave(per_video),
                                batch["view_index"][valid].reshape(-1))
                for views_batch in batcher.full():
                    local.forward(model, views_batch, dev, amp_dtype)
                bar.update(len(valid))
            for views_batch in batcher.rest():
                local.forward(model, views_batch, dev, amp_dtype)
    finally:
        if home != dev:
            model.to(home)
        model.train(was_training)
        # Workers are freed now, not with the traceback of an error (which keeps this frame).
        loader = None  # noqa: F841
    gathered = local.gather(world)
    unreadable = gathered.unreadable
    if unreadable and len(unreadable) == len(annotation.records):
        raise EffvidError(f"{annotation.source or 'the annotation'}: on_error=skip: none of its "
                          f"{len(annotation.records)} videos could be read (first: {unreadable[min(unreadable)]})")
    all_logits, all_targets, all_videos, all_views, all_costs = gathered.tensors(per_video)
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
        if rank == 0:  # one writer; the other ranks report no file
            matrix = confusion_matrix(metrics["video_probs"], metrics["video_targets"])
            names = annotation.class_names if len(annotation.class_names) == spec.num_classes \
                else meta.get("class_names", [])
            png = str(plot_confusion_matrix(matrix, names or [str(i) for i in range(spec.num_classes)], confusion_png))
    shape = spec_input_shape(spec)
    if all_costs is not None:
        cost = cost_summary(all_costs[kept], rows, dense_gmacs=model.dense_gmacs(), views_per_video=per_video)
    elif count_cost:
        cost = static_cost_summary(count_static(model, shape).gmacs, per_video)
    else:
        cost = {}
    return EvalResult(
        clip_top1=metrics["clip_top1"], video_top1=metrics["video_top1"], video_top5=metrics["video_top5"],
        mean_class_acc=metrics["mean_class_accuracy"], mAP=metrics["mAP"],
        gmacs_per_view=cost.get("gmacs_per_view", float("nan")),
        gmacs_per_video=cost.get("gmacs_per_video", float("nan")), views=(clips, crops),
        params=sum(p.numel() for p in model.parameters()),
        clips_per_second=gathered.clips_per_second, num_videos=metrics["num_videos"], input_shape=tuple(shape),
        confusion_png=png, cost=cost, dynamic=is_dynamic(model), video_probs=metrics["video_probs"],
        video_targets=metrics["video_targets"], skipped_videos=len(unreadable), video_indices=video_indices,
        device=str(dev), amp={torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "off"), world_size=world)


def resolve_amp(amp: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an evaluation on ``device`` (None: float32); see :func:`evaluate`."""
    if amp not in (None, "off", "bf16", "fp16"):
        raise ConfigError(f"amp must be 'off', 'bf16' or 'fp16', got {amp!r}")
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            log.info("amp: %s asked for, but mixed precision runs on CUDA only; evaluating in float32", amp)
        return None
    if amp is None:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _world(distributed: bool | None) -> tuple[int, int]:
    """``(world size, rank)`` the videos are sharded over."""
    active = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = active and dist.get_world_size() > 1
    if not distributed:
        return 1, 0
    if not active:
        raise ConfigError("evaluate(distributed=True) needs an initialised process group (start under torchrun)")
    return dist.get_world_size(), dist.get_rank()


class _ViewBatcher:
    """Views of whole videos regrouped into forward batches of exactly ``size`` views (the last smaller)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: list[tuple[torch.Tensor, ...]] = []
        self.count = 0

    def add(self, *columns: torch.Tensor) -> None:
        self.parts.append(columns)
        self.count += len(columns[0])

    def full(self) -> Iterator[tuple[torch.Tensor, ...]]:
        while self.count >= self.size:
            yield self._take(self.size)

    def rest(self) -> Iterator[tuple[torch.Tensor, ...]]:
        yield from self.full()
        if self.count:
            yield self._take(self.count)

    def _take(self, n: int) -> tuple[torch.Tensor, ...]:
        columns = [torch.cat(column) for column in zip(*self.parts)] if len(self.parts) > 1 else list(self.parts[0])
        taken = tuple(column[:n] for column in columns)
        rest = tuple(column[n:] for column in columns)
        self.parts = [rest] if len(rest[0]) else []
        self.count -= n
        return taken


class _Collected:
    """What one process evaluated: per-view outputs, unreadable videos, forward time."""

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.videos: list[torch.Tensor] = []
        self.views: list[torch.Tensor] = []
        self.costs: list[torch.Tensor] = []
        self.unreadable: dict[int, str] = {}  # video -> the error of its first unreadable view
        self.forward_s = 0.0
        self.views_run = 0
        self.clips_per_second = float("nan")

    def forward(self, model: nn.Module, batch: tuple[torch.Tensor, ...], device: torch.device,
                amp_dtype: torch.dtype | None) -> None:
        clip, target, video, view = batch
        clip = to_device(clip, device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model_output(model, clip)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.forward_s += time.perf_counter() - start
        self.views_run += len(clip)
        self.logits.append(out.logits.float().cpu())
        if out.cost is not None:
            self.costs.append(out.cost.double().cpu())
        self.targets.append(target)
        self.videos.append(video)
        self.views.append(view)

    def gather(self, world: int) -> _Collected:
        """Every rank's outputs in one (this one when ``world`` is 1); clips per second summed."""
        rate = self.views_run / self.forward_s if self.forward_s > 0 else float("nan")
        if world == 1:
            self.clips_per_second = rate
            return self
        mine = {"logits": self.logits, "targets": self.targets, "videos": self.videos, "views": self.views,
                "costs": self.costs, "unreadable": self.unreadable, "rate": rate}
        everyone: list[Any] = [None] * world
        dist.all_gather_object(everyone, mine)
        merged = _Collected()
        for part in everyone:
            for name in ("logits", "targets", "videos", "views", "costs"):
                getattr(merged, name).extend(part[name])
            merged.unreadable.update(part["unreadable"])
        rates = [part["rate"] for part in everyone if part["rate"] == part["rate"]]
        merged.clips_per_second = sum(rates) if rates else float("nan")
        return merged

    def tensors(self, views_per_video: int) -> tuple[torch.Tensor, ...]:
        """``(logits, targets, videos, views, costs or None)`` ordered by video, then view."""
        logits, targets = torch.cat(self.logits), torch.cat(self.targets)
        videos, views = torch.cat(self.videos).long(), torch.cat(self.views).long()
        order = torch.argsort(videos * views_per_video + views, stable=True)
        costs = torch.cat(self.costs)[order] if self.costs else None
        return logits[order], targets[order], videos[order], views[order], costs


def to_device(clip: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A clip batch moved to ``device`` (without waiting, from pinned memory)."""
    return clip.to(device, non_blocking=True)


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over ``total`` videos (context manager, ``update(n)``); a silent stand-in when off."""
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="video", leave=False, dynamic_ncols=True, disable=not enabled)
