"""D-STEP's reports: the Figure-3 computation maps of a video and the channel decisions per block.

Both decode a video the way evaluation does (one test view: the TSN segment centres, the centre
crop at the spec's size) and run the model in eval mode, so the decisions are the inference
path's (argmax, unless the settings ask for sampling).

**The computation map** (the paper's Figure 3) gives, per sampled frame and input pixel, the
share of the dense work of the blocks' convolutions that the decisions spend there, averaged
over the blocks: for one block, a tile's share is 0 when its mask is off, else the block's
convolution MACs per tile under this frame's channel decisions (Eq. 2 per tile: the first
convolution's needed channels, the second's non-skipped ones, a Bottleneck's last convolution
in full) over the same with every channel computed; each block's tile grid is spread over the
input pixels its tiles cover. It shows the decisions, not the dense fallback of frames with
many active tiles (``dense_above``), which executes the whole map but decides the same.

**The decision rates** are, per block, the fractions of channel decisions (channels x frames x
clips) that skip, reuse and compute (summing to 1), with the block's mean spatial density.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from effvid.data.annotations import Annotation, VideoRecord, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.engine.checkpoint import load_method_model, resolve_checkpoint
from effvid.errors import ConfigError
from effvid.io import write_json
from effvid.methods.dstep.block import DStepBlock
from effvid.methods.dstep.cost import channel_counts
from effvid.methods.dstep.model import DStep
from effvid.methods.dstep.settings import ACTION_NAMES
from effvid.methods.dstep.sparse import tiles_to_pixels
from effvid.report.plots import plot_channel_decisions, plot_computation_maps
from effvid.spec import ArchSpec

# ---------------------------------------------------------------------------------------------
# the model


def load_dstep(checkpoint: str | Path, *, device: str | torch.device = "cpu") -> tuple[DStep, dict[str, Any]]:
    """``(model, sidecar)`` of a D-STEP checkpoint (stem, one of its files or a run directory), in
    eval mode on ``device``. A checkpoint of another model is a :class:`CheckpointError`; a
    missing one is an :class:`~effvid.errors.EffvidError` naming it."""
    model, meta, _ = load_method_model(checkpoint, "dstep", label="D-STEP", purpose="D-STEP reports need a D-STEP "
                                       "model", device=device)
    return model, meta  # type: ignore[return-value]


@contextmanager
def _evaluating(model: DStep) -> Iterator[torch.device]:
    """``model`` in eval mode without gradients (its mode restored afterwards); yields its device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def display_frames(clip: Tensor, spec: ArchSpec) -> np.ndarray:
    """A normalised clip ``(C, T, H, W)`` back to displayable uint8 frames ``(T, H, W, 3)``
    (the inverse of the data layer's ``(x / 255 - mean) / std``)."""
    mean = torch.as_tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1, 1)
    std = torch.as_tensor(spec.std, dtype=torch.float32).view(-1, 1, 1, 1)
    frames = ((clip.detach().cpu().float() * std + mean) * 255.0).clamp(0, 255).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).numpy()


# ---------------------------------------------------------------------------------------------
# the computation map


def tile_computation(block: DStepBlock) -> Tensor:
    """Per frame and tile of ``block``'s last forward ``(N, rows, cols)``: the share of the dense
    work of its convolutions that its decisions spend on that tile (module docstring), in [0, 1]."""
    record = block.last
    if record is None:
        raise RuntimeError("tile_computation needs a block that has run a forward")
    counts = channel_counts(record.decisions.to(torch.float64), block.num_segments)
    pixels = block.tile_pixels()
    spent = torch.zeros_like(counts["all"])
    dense = 0.0
    for term in block.terms:
        spent = spent + pixels[term.where] * counts[term.channels] * term.macs
        dense += pixels[term.where] * (1 if term.channels == "all" else block.policy.channels) * term.macs
    return record.mask.to(torch.float64) * (spent / dense)[:, None, None]


def computation_maps(model: DStep, size: tuple[int, int]) -> Tensor:
    """Per frame of ``model``'s last forward at ``size`` input pixels ``(N, H, W)``: each block's
    :func:`tile_computation` spread over the input pixels its tiles cover, averaged over blocks."""
    in_size = model._frame_fixed_macs(size)[1]
    total: Tensor | None = None
    for block in model.blocks():
        out_size = block.out_size(*in_size)
        per_pixel = tiles_to_pixels(tile_computation(block), block.tile, *out_size)
        spread = F.interpolate(per_pixel, size=size, mode="nearest")[:, 0]
        total = spread if total is None else total + spread
        in_size = out_size
    assert total is not None
    return total / len(model.blocks())


def _view(model: DStep, video: Path, class_names: Sequence[str], *, backend: str,
          target_fps: float | None) -> Tensor:
    """``video`` decoded as one evaluation view ``(1, C, T, H, W)``; unreadable: a VideoError."""
    record = VideoRecord(path=str(video), label=0, video_id=str(video))
    annotation = Annotation(records=(record,), class_names=tuple(class_names), multilabel=False, format="single")
    dataset = VideoDataset(annotation, spec=model.spec, train=False, backend=backend, target_fps=target_fps)
    return dataset.video_item(0)["clip"]


def computation_figure(model: DStep, video_path: str | Path, path: str | Path, *, class_names: Sequence[str] = (),
                       backend: str = "pyav", target_fps: float | None = None) -> dict[str, Any]:
    """Write the Figure-3 picture of ``video_path`` to the PNG ``path`` and return what it shows:
    ``{"video", "png", "prediction", "gmacs", "dense_gmacs", "frame_computation" (per sampled
    frame, the mean of its map), "frame_gmacs"}``. The prediction is named by ``class_names``
    when they give one name per class. A missing or unreadable video is a
    :class:`~effvid.errors.VideoError`."""
    spec = model.spec
    video = Path(video_path)
    names = list(class_names) if len(class_names) == spec.num_classes else [str(i) for i in range(spec.num_classes)]
    clip = _view(model, video, names, backend=backend, target_fps=target_fps)
    with _evaluating(model) as device:
        out = model.forward_output(clip.to(device))
        maps = computation_maps(model, (clip.shape[-2], clip.shape[-1])).cpu().numpy()
    predicted = names[int(out.logits[0].argmax())]
    gmacs = float(out.cost[0])
    frame_gmacs = out.decisions["frame_gmacs"][0].tolist()
    captions = [f"{m.mean():.2f} ({g * 1e3:.2f} MMACs)" for m, g in zip(maps, frame_gmacs)]
    title = (f"{video.name}: predicted {predicted}, {gmacs:.4f} of {model.dense_gmacs():.4f} dense GMACs\n"
             "share of the dense work per tile, mean over blocks")
    png = plot_computation_maps(display_frames(clip[0], spec), maps, path, captions=captions, title=title)
    return {"video": str(video), "png": str(png), "prediction": predicted, "gmacs": gmacs,
            "dense_gmacs": model.dense_gmacs(), "frame_computation": [float(m.mean()) for m in maps],
            "frame_gmacs": frame_gmacs}


# ---------------------------------------------------------------------------------------------
# decision rates


def decision_rates(model: DStep, annotation: Annotation, *, batch_size: int = 8, num_workers: int = 0,
                   backend: str = "pyav", target_fps: float | None = None) -> dict[str, Any]:
    """The channel decisions of ``model`` on one evaluation view of each of ``annotation``'s videos.

    Returns ``{"num_clips", "action_names", "blocks": [{"block", "skip", "reuse", "compute",
    "spatial_density"}], "mean_over_blocks", "gmacs" {"mean", "min", "max"}, "dense_gmacs"}``:
    each block's rates are fractions of its channel decisions over all channels, frames and
    clips (summing to 1).
    """
    dataset = VideoDataset(annotation, spec=model.spec, train=False, backend=backend, target_fps=target_fps)
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False)
    keys = ("skip_rate", "reuse_rate", "compute_rate", "spatial_density")
    sums = {key: torch.zeros(len(model.block_names), dtype=torch.float64) for key in keys}
    costs: list[float] = []
    with _evaluating(model) as device:
        for batch in loader:
            out = model.forward_output(batch["clip"].to(device))
            for key in keys:
                sums[key] += out.decisions[key].detach().to(torch.float64).sum(dim=0).cpu()
            costs.extend(out.cost.tolist())
    if not costs:
        raise ConfigError("D-STEP decision rates: the annotation holds no videos")
    means = {key: (value / len(costs)).tolist() for key, value in sums.items()}
    blocks = [{"block": name, **{action: means[f"{action}_rate"][i] for action in ACTION_NAMES},
               "spatial_density": means["spatial_density"][i]} for i, name in enumerate(model.block_names)]
    overall = {key: float(np.mean([row[key] for row in blocks])) for key in (*ACTION_NAMES, "spatial_density")}
    return {"num_clips": len(costs), "action_names": list(ACTION_NAMES), "blocks": blocks,
            "mean_over_blocks": overall, "gmacs": {"mean": float(np.mean(costs)), "min": min(costs),
                                                   "max": max(costs)},
            "dense_gmacs": model.dense_gmacs()}


# ---------------------------------------------------------------------------------------------
# the whole report


def write_dstep_report(checkpoint: str | Path, out_dir: str | Path, *, data: str | Path | None = None,
                       videos: Sequence[str | Path] = (), maps: int = 3, root: str | Path | None = None,
                       format: str = "auto", max_videos: int | None = None, batch_size: int = 8,
                       num_workers: int = 0, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A D-STEP checkpoint's report in ``out_dir``: ``map_NN_<video>.png`` (Figure 3,
    :func:`computation_figure`) for each of ``videos`` (default: the first ``maps`` videos of
    ``data``), ``decision_rates.png`` and ``dstep.json`` (:func:`decision_rates` on ``data``, its
    first ``max_videos`` videos, or on ``videos`` without ``data``). Returns ``{"checkpoint",
    "data", "maps" [computation_figure results], "rates_png", "json", "rates"}``. The video
    backend and frame rate are the checkpoint's. Neither ``data`` nor ``videos``, a missing
    file, an unreadable video or a checkpoint that is not D-STEP's is an
    :class:`~effvid.errors.EffvidError` naming it."""
    if data is None and not videos:
        raise ConfigError("analyze dstep: give an annotation list (--data) or videos (--video)")
    model, meta = load_dstep(checkpoint, device=device)
    transforms = meta.get("transforms") or {}
    backend, target_fps = transforms.get("backend", "pyav"), transforms.get("target_fps")
    class_names = list(meta.get("class_names") or [])
    if data is not None:
        annotation = load_annotations(data, root=root, format=format)
        if max_videos is not None:
            annotation = dataclasses.replace(annotation, records=annotation.records[:max_videos])
        class_names = class_names or list(annotation.class_names)
    else:
        records = tuple(VideoRecord(path=str(v), label=0, video_id=str(v)) for v in videos)
        names = tuple(class_names) or tuple(str(k) for k in range(model.spec.num_classes))
        annotation = Annotation(records=records, class_names=names, multilabel=False, format="single")
    out = Path(out_dir)
    chosen = [str(v) for v in videos] or [record.path for record in annotation.records[:maps]]
    figures = [computation_figure(model, video, out / f"map_{i:02d}_{Path(video).stem}.png",
                                  class_names=class_names, backend=backend, target_fps=target_fps)
               for i, video in enumerate(chosen)]
    rates = decision_rates(model, annotation, batch_size=batch_size, num_workers=num_workers, backend=backend,
                           target_fps=target_fps)
    matrix = [[row[action] for action in ACTION_NAMES] for row in rates["blocks"]]
    rates_png = plot_channel_decisions(matrix, [row["block"] for row in rates["blocks"]], ACTION_NAMES,
                                       out / "decision_rates.png",
                                       title=f"D-STEP channel decisions per block ({rates['num_clips']} clips)")
    report = {"checkpoint": str(resolve_checkpoint(checkpoint)), "data": None if data is None else str(data),
              "maps": figures, "rates_png": str(rates_png), "json": str(out / "dstep.json"), "rates": rates}
    write_json(out / "dstep.json", report)
    return report
