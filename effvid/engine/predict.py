"""Classify one video file with a trained checkpoint: top-k class names, probabilities, GMACs spent.

Only the frames the test views sample are decoded, so long and high-resolution files cost
little more than short ones. A file the decoder cannot read raises the data layer's
:class:`~effvid.errors.VideoError` (path and reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from effvid.data.annotations import Annotation, VideoRecord
from effvid.engine.evaluate import resolve_model, to_device
from effvid.engine.losses import output_logits
from effvid.errors import ConfigError, VideoError


def predict(checkpoint: str | Path, video_path: str | Path, *, topk: int = 5, views: tuple[int, int] = (1, 1),
            backend: str = "pyav") -> dict[str, Any]:
    """``{"video", "topk": [{"class", "index", "probability"}], "views", "gmacs_per_view", "gmacs", ...}``.

    Probabilities are the softmax averaged over the ``K x C`` views; ``gmacs`` is the cost of
    all views (per view x views).
    """
    from effvid.data.dataset import VideoDataset
    from effvid.cost.static import count_cost, spec_input_shape

    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}")
    path = Path(video_path)
    if not path.exists():
        raise VideoError(str(path), "no such file")
    model, meta = resolve_model(checkpoint)
    spec = model.spec
    names = list(meta.get("class_names") or [str(i) for i in range(spec.num_classes)])
    annotation = Annotation(records=(VideoRecord(path=str(path), label=0, video_id=str(path)),),
                            class_names=tuple(names), multilabel=False, format="single")
    clips, crops = views
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, num_clips=clips, num_crops=crops,
                           target_fps=(meta.get("transforms") or {}).get("target_fps"))
    device = next(model.parameters()).device
    clips_in = [dataset[i]["clip"] for i in range(len(dataset))]
    if isinstance(clips_in[0], list):
        raise ConfigError(f"{checkpoint}: multi-resolution models are not supported by predict")
    with torch.no_grad():
        logits = output_logits(model(to_device(torch.stack(clips_in), device))).float().cpu()
    probs = torch.softmax(logits, dim=-1).mean(dim=0)
    k = min(topk, probs.numel())
    top = probs.topk(k)
    cost = count_cost(model, spec_input_shape(spec))
    return {
        "video": str(path),
        "topk": [{"class": names[i], "index": int(i), "probability": float(p)}
                 for p, i in zip(top.values.tolist(), top.indices.tolist())],
        "views": [clips, crops],
        "gmacs_per_view": cost.gmacs,
        "gmacs": cost.gmacs * clips * crops,
        "input_shape": list(cost.input_shape),
        "model": spec.name,
    }
