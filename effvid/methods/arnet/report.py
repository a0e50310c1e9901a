"""AR-Net's reports: the Figure-4 decision strip of a video and the action usage of a dataset.

Both decode a video the way evaluation does (one test view: the TSN segment centres, the centre
crop at the spec's size) and run the model in eval mode, so the decisions are the routed
inference's (argmax, unless the settings ask for sampling). The strip shows each sampled frame
with the action in force at it (a frame covered by a skip carries the skip's label). Usage counts
the actions per sampled frame: per class, overall, and, where the dataset says which frames are
uninformative, on those frames against all other sampled frames. That split is what the paper's
claim needs: skips and low resolutions chosen more often on the uninformative stretches.

Which frames are uninformative is known for SynthActions folders: :class:`SynthStretches` asks
the generator (:func:`~effvid.data.synthetic.generate.job_stretch`, which renders the video again:
``(seed, split, index)`` give the same frames, about 12 ms a video at 64 px). Videos of any other
dataset have no known stretch and are left out of that split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from effvid.data.annotations import Annotation, VideoRecord, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.decode import probe_video
from effvid.data.loader import build_loader
from effvid.data.sampling import ClipSampler
from effvid.data.synthetic.generate import (
    GENERATOR_VERSION,
    MANIFEST,
    SynthManifest,
    job_stretch,
    load_manifest,
    video_length,
)
from effvid.engine.checkpoint import load_method_model, resolve_checkpoint
from effvid.errors import ConfigError, EffvidError
from effvid.io import write_json
from effvid.methods.arnet.model import ARNet
from effvid.report.plots import plot_action_usage, plot_decision_strip
from effvid.spec import ArchSpec

_SYNTH_FILE = re.compile(r"^(train|val|test)(\d{5})_\d{6}_\d{6}\.mp4$")


# ---------------------------------------------------------------------------------------------
# the model


def load_arnet(checkpoint: str | Path, *, device: str | torch.device = "cpu") -> tuple[ARNet, dict[str, Any]]:
    """``(model, sidecar)`` of an AR-Net checkpoint (stem, one of its files or a run directory),
    in eval mode on ``device``. A checkpoint of another model is a :class:`CheckpointError`; the
    Multi-Scale baseline (``mode: multiscale``) makes no decisions and is a :class:`ConfigError`."""
    model, meta, stem = load_method_model(checkpoint, "arnet", label="AR-Net", purpose="decision reports need an "
                                          "AR-Net model", device=device)
    if model.settings.mode == "multiscale":
        raise ConfigError(f"{stem}.json: the Multi-Scale baseline (mode: multiscale) runs every branch on every "
                          "frame and makes no per-frame decisions to report")
    return model, meta


@contextmanager
def _evaluating(model: ARNet) -> Iterator[torch.device]:
    """``model`` in eval mode without gradients (its mode restored afterwards); yields its device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model.action_costs.device
    finally:
        model.train(was_training)


def frame_labels(model: ARNet, actions: Tensor | Sequence[int]) -> list[str]:
    """The action names (``resnet18@112``, ``skip2``) of a video's per-frame ``actions``."""
    names = model.settings.action_names
    return [names[int(a)] for a in torch.as_tensor(actions).reshape(-1).tolist()]


def display_frames(clip: Tensor, spec: ArchSpec) -> np.ndarray:
    """A normalised clip ``(C, T, H, W)`` back to displayable uint8 frames ``(T, H, W, 3)``
    (the inverse of the data layer's ``(x / 255 - mean) / std``)."""
    mean = torch.as_tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1, 1)
    std = torch.as_tensor(spec.std, dtype=torch.float32).view(-1, 1, 1, 1)
    pixels = (clip.detach().float().cpu() * std + mean) * 255.0
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()


def sampled_frames(record: VideoRecord, spec: ArchSpec, *, backend: str = "pyav",
                   target_fps: float | None = None) -> tuple[np.ndarray, int]:
    """``(indices, num_frames)``: the source frames evaluation samples from ``record`` for a
    model of ``spec`` (its one test view, ``(T,)`` int64) and the video's frame count; an
    unreadable video is a :class:`~effvid.errors.VideoError`."""
    info = probe_video(record.path, backend, num_frames=record.num_frames)
    return ClipSampler.from_spec(spec, target_fps=target_fps).test(info.num_frames, info.fps, 1)[0], info.num_frames


def _in_stretch(record: VideoRecord, spec: ArchSpec, stretches: SynthStretches, *, backend: str,
                target_fps: float | None) -> np.ndarray | None:
    """Per sampled frame of ``record``, whether it lies in the video's uninformative stretch;
    None when that is unknown (not a SynthActions video, or decoded to another frame count)."""
    mask = stretches.stretch(record)
    if mask is None:
        return None
    indices, num_frames = sampled_frames(record, spec, backend=backend, target_fps=target_fps)
    return mask[indices] if len(mask) == num_frames else None


# ---------------------------------------------------------------------------------------------
# uninformative stretches


class SynthStretches:
    """Per video of a SynthActions folder, which of its frames are uninformative.

    ``stretch(record)`` is a ``(num_frames,)`` boolean array: true where the video's stretch of
    blank, noise, blurred or frozen frames overwrote the rendered frame (all false for the three
    quarters of videos without one; a frozen stretch's first frame is the one it repeats, so it
    stays false). ``None`` when the record is not a video of a SynthActions folder written by
    this generator version (``{split}/{class}/{split}{index:05d}_..._....mp4`` under a folder
    with a ``manifest.json``), so nothing is known about it. The class comes from the path, not
    from the record's label, so a record made for one video alone (label 0) is found too.
    """

    def __init__(self) -> None:
        self._manifests: dict[Path, SynthManifest | None] = {}

    def stretch(self, record: VideoRecord) -> np.ndarray | None:
        path = Path(record.path)
        match = _SYNTH_FILE.match(path.name)
        if match is None or len(path.parents) < 3:
            return None
        manifest = self._manifest(path.parents[2])
        if manifest is None or path.parent.name not in manifest.class_names:
            return None
        label = manifest.class_names.index(path.parent.name)
        return _replayed_stretch(manifest, match.group(1), int(match.group(2)), label)

    def _manifest(self, root: Path) -> SynthManifest | None:
        if root not in self._manifests:
            found = None
            if (root / MANIFEST).is_file():
                try:
                    found = load_manifest(root)
                except EffvidError:
                    found = None
            self._manifests[root] = found if found and found.version == GENERATOR_VERSION else None
        return self._manifests[root]


def _replayed_stretch(manifest: SynthManifest, split: str, index: int, label: int) -> np.ndarray:
    """The frames of video ``index`` of ``split`` that its stretch overwrote (a frozen stretch
    repeats its first frame, which stays real), from the generator's :func:`job_stretch`."""
    frames = np.zeros(video_length(manifest.preset, manifest.seed, split, index), dtype=bool)
    stretch = job_stretch(manifest.preset, manifest.seed, split, index, label)
    if stretch is not None:
        frames[stretch.start + (stretch.kind == "freeze"):stretch.end] = True
    return frames


# ---------------------------------------------------------------------------------------------
# the decision strip


def decision_strip(model: ARNet, video_path: str | Path, path: str | Path, *, class_names: Sequence[str] = (),
                   backend: str = "pyav", target_fps: float | None = None) -> dict[str, Any]:
    """Write the Figure-4 strip of ``video_path`` to the PNG ``path`` and return what it shows:
    ``{"video", "png", "frames" (sampled source frame indices), "actions" (one label per
    sampled frame), "in_stretch" (per frame, or None when unknown), "prediction", "gmacs"}``.

    The video is decoded like one evaluation view (:func:`sampled_frames`); the prediction is
    named by ``class_names`` when they give one name per class, else by its index. A missing or
    unreadable video is a :class:`~effvid.errors.VideoError`.
    """
    spec = model.spec
    video = Path(video_path)
    names = list(class_names) if len(class_names) == spec.num_classes else [str(i) for i in range(spec.num_classes)]
    record = VideoRecord(path=str(video), label=0, video_id=str(video))
    annotation = Annotation(records=(record,), class_names=tuple(names), multilabel=False, format="single")
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, target_fps=target_fps)
    clip = dataset.video_item(0)["clip"]
    with _evaluating(model) as device:
        out = model.forward_output(clip.to(device))
    labels = frame_labels(model, out.decisions["actions"][0])
    predicted = names[int(out.logits[0].argmax())]
    gmacs = float(out.cost[0])
    indices, _ = sampled_frames(record, spec, backend=backend, target_fps=target_fps)
    inside = _in_stretch(record, spec, SynthStretches(), backend=backend, target_fps=target_fps)
    title = f"{video.name}: predicted {predicted}, {gmacs:.4f} GMACs"
    png = plot_decision_strip(display_frames(clip[0], spec), labels, path, title=title)
    return {"video": str(video), "png": str(png), "frames": indices.tolist(), "actions": labels,
            "in_stretch": None if inside is None else inside.tolist(), "prediction": predicted, "gmacs": gmacs}


# ---------------------------------------------------------------------------------------------
# action usage


def _usage_row(counts: np.ndarray, model: ARNet) -> dict[str, Any]:
    """Rates of ``counts`` (frames per action): ``{"frames", "rates" {action: rate} (summing to
    1; None without frames), "skip" (skipped frames), "low_resolution" (frames processed below
    the highest resolution)}``, the last two as fractions of all frames."""
    total = int(counts.sum())
    if total == 0:
        return {"frames": 0, "rates": None, "skip": None, "low_resolution": None}
    rates = counts / total
    top = model.num_resolutions
    return {"frames": total, "rates": dict(zip(model.settings.action_names, rates.tolist())),
            "skip": float(rates[top:].sum()), "low_resolution": float(rates[1:top].sum())}


def action_usage(model: ARNet, annotation: str | Path | Annotation, *, batch_size: int = 8, num_workers: int = 0,
                 root: str | Path | None = None, format: str = "auto", backend: str = "pyav",
                 target_fps: float | None = None) -> dict[str, Any]:
    """How often ``model`` chooses each action on the sampled frames of ``annotation``'s videos.

    Returns ``{"num_videos", "frames_per_video", "action_names", "num_resolutions", "overall",
    "per_class": [{"class", "index", "videos", **row}], "uninformative"}``: each row as
    :func:`_usage_row` (rates summing to 1), ``per_class`` for the classes that have videos (a
    multi-label video counts for each of its classes), ``uninformative`` ``{"known_videos",
    "videos_with_stretch", "stretch", "elsewhere"}`` (rows of the sampled frames inside the
    uninformative stretches and of every other sampled frame of the videos where that is known,
    :class:`SynthStretches`), or None when it is known for no video. Each video is decoded as
    one evaluation view.
    """
    if not isinstance(annotation, Annotation):
        annotation = load_annotations(annotation, root=root, format=format)
    spec = model.spec
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=backend, target_fps=target_fps)
    loader = build_loader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False)
    actions: dict[int, np.ndarray] = {}
    with _evaluating(model) as device:
        for batch in loader:
            out = model.forward_output(batch["clip"].to(device))
            for video, row in zip(batch["video_index"].tolist(), out.decisions["actions"].cpu().numpy()):
                actions[int(video)] = row
    num_actions = model.settings.num_actions
    per_class = np.zeros((spec.num_classes, num_actions), dtype=np.int64)
    videos_per_class = np.zeros(spec.num_classes, dtype=np.int64)
    overall = np.zeros(num_actions, dtype=np.int64)
    split = {True: np.zeros(num_actions, dtype=np.int64), False: np.zeros(num_actions, dtype=np.int64)}
    known = with_stretch = 0
    stretches = SynthStretches()
    for video, row in sorted(actions.items()):
        record = dataset.records[video]
        counts = np.bincount(row, minlength=num_actions)
        overall += counts
        labels = (record.label,) if isinstance(record.label, int) else tuple(record.label)
        for label in labels:
            per_class[label] += counts
            videos_per_class[label] += 1
        inside = _in_stretch(record, spec, stretches, backend=backend, target_fps=target_fps)
        if inside is None:
            continue
        known += 1
        with_stretch += int(inside.any())
        for flag in (True, False):
            split[flag] += np.bincount(row[inside == flag], minlength=num_actions)
    names = list(annotation.class_names) or [str(i) for i in range(spec.num_classes)]
    classes = [{"class": names[k] if k < len(names) else str(k), "index": k, "videos": int(videos_per_class[k]),
                **_usage_row(per_class[k], model)} for k in range(spec.num_classes) if videos_per_class[k]]
    uninformative = None
    if known:
        uninformative = {"known_videos": known, "videos_with_stretch": with_stretch,
                         "stretch": _usage_row(split[True], model), "elsewhere": _usage_row(split[False], model)}
    return {"num_videos": len(actions), "frames_per_video": spec.num_frames,
            "action_names": list(model.settings.action_names), "num_resolutions": model.num_resolutions,
            "overall": _usage_row(overall, model),
            "per_class": classes, "uninformative": uninformative}


# ---------------------------------------------------------------------------------------------
# the whole report


def _strip_videos(annotation: Annotation, count: int, spec: ArchSpec, *, backend: str,
                  target_fps: float | None) -> list[str]:
    """``count`` videos of ``annotation`` for strips: those with sampled frames inside an
    uninformative stretch first (where known), then the others, each group in annotation order."""
    stretches = SynthStretches()
    hits = []
    for record in annotation.records:
        inside = _in_stretch(record, spec, stretches, backend=backend, target_fps=target_fps)
        hits.append(inside is not None and bool(inside.any()))
    order = [r for r, hit in zip(annotation.records, hits) if hit] + [r for r, hit in zip(annotation.records, hits)
                                                                     if not hit]
    return [record.path for record in order[:count]]


def write_decision_report(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *,
                          videos: Sequence[str | Path] = (), strips: int = 3, root: str | Path | None = None,
                          format: str = "auto", batch_size: int = 8, num_workers: int = 0,
                          device: str | torch.device = "cpu") -> dict[str, Any]:
    """An AR-Net checkpoint's decision report in ``out_dir``: ``strip_NN_<video>.png`` for each
    of ``videos`` (default: ``strips`` videos of ``data``, those with sampled frames in an
    uninformative stretch first), ``usage.png`` (per-class action usage on ``data``) and ``usage.json``
    (:func:`action_usage`). Returns ``{"checkpoint", "data", "strips" [decision_strip results],
    "usage_png", "usage_json", "usage"}``. The video backend and frame rate are the checkpoint's
    (its recorded transforms). A missing file, an unreadable video or a checkpoint that is not
    AR-Net's is an :class:`~effvid.errors.EffvidError` naming it."""
    model, meta = load_arnet(checkpoint, device=device)
    transforms = meta.get("transforms") or {}
    backend, target_fps = transforms.get("backend", "pyav"), transforms.get("target_fps")
    annotation = load_annotations(data, root=root, format=format)
    class_names = list(meta.get("class_names") or annotation.class_names)
    out = Path(out_dir)
    chosen = [str(v) for v in videos] or _strip_videos(annotation, strips, model.spec, backend=backend,
                                                       target_fps=target_fps)
    strip_results = [decision_strip(model, video, out / f"strip_{i:02d}_{Path(video).stem}.png",
                                    class_names=class_names, backend=backend, target_fps=target_fps)
                     for i, video in enumerate(chosen)]
    usage = action_usage(model, annotation, batch_size=batch_size, num_workers=num_workers, backend=backend,
                         target_fps=target_fps)
    rows = usage["per_class"]
    matrix = [[row["rates"][name] for name in usage["action_names"]] for row in rows]
    usage_png = plot_action_usage(matrix, [row["class"] for row in rows], usage["action_names"], out / "usage.png",
                                  title=f"AR-Net action usage per class ({usage['num_videos']} videos)")
    usage_json = out / "usage.json"
    write_json(usage_json, usage)
    return {"checkpoint": str(resolve_checkpoint(checkpoint)), "data": str(data), "strips": strip_results,
            "usage_png": str(usage_png), "usage_json": str(usage_json), "usage": usage}
