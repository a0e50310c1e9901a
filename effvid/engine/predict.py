"""Classify one video file with a trained checkpoint: top-k class names, probabilities, GMACs spent.

Only the frames the test views sample are decoded, so long and high-resolution files cost
little more than short ones. A file the decoder cannot read raises the data layer's
:class:`~effvid.errors.VideoError` (path and reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from effvid.cost.static import count_cost, spec_input_shape
from effvid.data.annotations import Annotation, VideoRecord
from effvid.data.dataset import VideoDataset
from effvid.engine.evaluate import (
    cost_summary,
    resolve_amp,
    resolve_model,
    static_cost_summary,
    to_device,
)
from effvid.errors import ConfigError, VideoError
from effvid.models.base import is_dynamic, model_output
from effvid.models.inference import resolve_device


def predict(checkpoint: str | Path, video_path: str | Path, *, topk: int = 5, views: tuple[int, int] = (1, 1),
            backend: str = "pyav", device: str = "auto", amp: str | None = None) -> dict[str, Any]:
    """``{"video", "topk": [{"class", "index", "probability"}], "views", "gmacs", <COST_KEYS>, ...}``.

    Probabilities are the softmax averaged over the ``K x C`` views; ``gmacs`` is the cost of
    all views of this video, and the cost keys of :mod:`effvid.engine.evaluate` (mean, min and
    max per view, dense cost) describe how it was spent. ``device`` and ``amp`` as for
    :func:`~effvid.engine.evaluate.evaluate` (CUDA when present, bf16 autocast there). The
    video is opened once for all its views. Classes are named by the sidecar's
    ``class_names``, or by their index when it saved none; a sidecar whose list does not give one
    name per class is refused when the checkpoint is read (:func:`~effvid.engine.checkpoint.read_sidecar`).
    """

    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}")
    path = Path(video_path)
    if not path.exists():
        raise VideoError(str(path), "no such file")
    target = resolve_device(device)
    model, meta = resolve_model(checkpoint, device=target)
    amp_dtype = resolve_amp(amp, target)
    spec = model.spec
    names = list(meta.get("class_names") or [])
    if len(names) != spec.num_classes:  # none saved (or a module passed in): name classes by index
        names = [str(i) for i in range(spec.num_classes)]
    annotation = Annotation(records=(VideoRecord(path=str(path), label=0, video_id=str(path)),),
                            class_names=tuple(names), multilabel=False, format="single")
    clips, crops = views
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, num_clips=clips, num_crops=crops,
                           target_fps=(meta.get("transforms") or {}).get("target_fps"))
    clips_in = dataset.video_item(0)["clip"]
    with torch.no_grad(), torch.autocast(target.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out = model_output(model, to_device(clips_in, target))
    probs = torch.softmax(out.logits.float().cpu(), dim=-1).mean(dim=0)
    k = min(topk, probs.numel())
    top = probs.topk(k)
    shape = spec_input_shape(spec)
    if out.cost is not None:
        cost = cost_summary(out.cost.double().cpu(), torch.zeros(len(clips_in), dtype=torch.long),
                            dense_gmacs=model.dense_gmacs(), views_per_video=clips * crops)
    else:
        cost = static_cost_summary(count_cost(model, shape).gmacs, clips * crops)
    return {
        "video": str(path),
        "topk": [{"class": names[i], "index": int(i), "probability": float(p)}
                 for p, i in zip(top.values.tolist(), top.indices.tolist())],
        "views": [clips, crops],
        "gmacs": cost["gmacs_per_video"],
        **cost,
        "input_shape": list(shape),
        "model": spec.name,
        "dynamic": is_dynamic(model),
    }
