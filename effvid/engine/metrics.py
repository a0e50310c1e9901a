"""Video classification metrics: multi-view aggregation, top-k, mean class accuracy, mAP, confusion.

The arithmetic is torchmetrics' (``torchmetrics.functional.classification``); this module
decides what is measured. Test views of one video (``K`` clips x ``C`` crops, view index
``clip * C + crop``) are combined by averaging their softmax probabilities (sigmoid for
multi-label). Definitions:

* ``clip_top1``: top-1 of the centre view alone (middle clip, centre crop) of each video;
* ``video_top1`` / ``video_top5``: top-k of the averaged probabilities (for multi-label: the
  fraction of videos whose top-k predictions contain a true label);
* ``mean_class_accuracy``: top-1 recall averaged over the classes that occur (single-label);
* ``mAP``: macro one-vs-rest average precision over the classes with at least one positive.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_average_precision,
    multiclass_confusion_matrix,
    multilabel_average_precision,
)


def view_probabilities(logits: Tensor, *, multilabel: bool = False) -> Tensor:
    """Per-view class probabilities: softmax, or sigmoid for multi-label."""
    return torch.sigmoid(logits.float()) if multilabel else torch.softmax(logits.float(), dim=-1)


def aggregate_views(logits: Tensor, video_index: Tensor, *, num_videos: int | None = None,
                    multilabel: bool = False) -> Tensor:
    """Video probabilities ``(V, K)``: each video's view probabilities averaged (row ``v`` = video ``v``).

    ``video_index[i]`` is the video of view ``i``; videos without views get zeros.
    """
    video_index = video_index.long().to(logits.device)
    num_videos = int(video_index.max()) + 1 if num_videos is None else num_videos
    probs = view_probabilities(logits, multilabel=multilabel)
    sums = torch.zeros(num_videos, probs.shape[1], dtype=probs.dtype, device=probs.device).index_add_(0, video_index, probs)
    counts = torch.bincount(video_index, minlength=num_videos).clamp_min(1).to(probs.dtype)
    return sums / counts[:, None]


def centre_view(num_clips: int, num_crops: int) -> int:
    """The view index of the middle clip's centre crop."""
    return (num_clips // 2) * num_crops + num_crops // 2


def _hit_at_k(probs: Tensor, targets: Tensor, k: int) -> float:
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    return float(targets.gather(1, top).amax(dim=1).gt(0).float().mean())


def top_k_accuracy(probs: Tensor, targets: Tensor, k: int = 1) -> float:
    """Fraction of samples whose top-``k`` classes contain the label (any true label for multi-hot targets)."""
    if targets.dim() == 2:
        return _hit_at_k(probs, targets, k)
    return float(multiclass_accuracy(probs, targets.long(), num_classes=probs.shape[1], average="micro",
                                     top_k=min(k, probs.shape[1])))


def mean_class_accuracy(probs: Tensor, targets: Tensor) -> float:
    """Top-1 recall averaged over the classes present in ``targets``."""
    return float(multiclass_accuracy(probs, targets.long(), num_classes=probs.shape[1], average="macro"))


def mean_average_precision(probs: Tensor, targets: Tensor) -> float:
    """Macro one-vs-rest AP over classes with a positive; ``targets`` class indices or multi-hot ``(N, K)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about classes without positives
        if targets.dim() == 2:
            per_class = multilabel_average_precision(probs, targets.long(), num_labels=probs.shape[1], average=None)
            present = targets.sum(dim=0) > 0
        else:
            per_class = multiclass_average_precision(probs, targets.long(), num_classes=probs.shape[1], average=None)
            present = torch.bincount(targets.long(), minlength=probs.shape[1]) > 0
    per_class = per_class[present.to(per_class.device)]
    return float(per_class.nanmean()) if per_class.numel() else float("nan")


def confusion_matrix(probs: Tensor, targets: Tensor) -> Tensor:
    """``(K, K)`` counts: row = true class, column = predicted (top-1) class."""
    return multiclass_confusion_matrix(probs, targets.long(), num_classes=probs.shape[1])


def multiview_metrics(logits: Tensor, targets: Tensor, video_index: Tensor, view_index: Tensor, *,
                      num_clips: int, num_crops: int, multilabel: bool = False) -> dict[str, Any]:
    """Every metric of the module docstring from per-view ``logits (N, K)`` and per-view ``targets``.

    ``targets`` are class indices ``(N,)`` or multi-hot ``(N, K)``; a video's label is taken
    from its first view. Video ``v`` is row ``v`` of ``video_probs`` in the result.
    """
    video_index = video_index.long()
    num_videos = int(video_index.max()) + 1
    probs = aggregate_views(logits, video_index, num_videos=num_videos, multilabel=multilabel)
    n = len(video_index)
    first_view = torch.full((num_videos,), n, dtype=torch.long).scatter_reduce(
        0, video_index, torch.arange(n), reduce="amin")
    if bool((first_view == n).any()):
        raise ValueError("some video indices between 0 and the largest have no views")
    video_targets = targets[first_view]
    centre = view_index.long() == centre_view(num_clips, num_crops)
    centre_probs = view_probabilities(logits[centre], multilabel=multilabel)
    result: dict[str, Any] = {
        "clip_top1": top_k_accuracy(centre_probs, targets[centre], 1) if bool(centre.any()) else float("nan"),
        "video_top1": top_k_accuracy(probs, video_targets, 1),
        "video_top5": top_k_accuracy(probs, video_targets, 5),
        "mean_class_accuracy": None if multilabel else mean_class_accuracy(probs, video_targets),
        "mAP": mean_average_precision(probs, video_targets),
        "num_videos": num_videos,
        "num_views": int(len(video_index)),
        "video_probs": probs,
        "video_targets": video_targets,
    }
    return result
