"""Side-by-side comparison of trained models on one validation set: accuracy, cost and latency.

:func:`compare_models` evaluates each model (a module or a checkpoint) with the same views and
times them at batch 1 on the same decoded validation clips, interleaved clip by clip
(:func:`~effvid.cost.latency.compare_on_clips`), each prepared for inference as users run it,
so a dynamic model's wall-clock saving against a baseline is measured as a ratio in one run.
Every method's demo stage and benchmark reports its rows this way. :func:`executed_on_dataset`
holds a dynamic model's reported cost to the executed-op counter on every validation view.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from effvid.cost.executed import count_executed
from effvid.cost.latency import compare_on_clips, saving_ratio, torch_threads
from effvid.data.annotations import load_annotations
from effvid.data.dataset import VideoDataset
from effvid.engine.checkpoint import load_model
from effvid.engine.evaluate import evaluate
from effvid.errors import ConfigError
from effvid.models import prepare_for_inference
from effvid.spec import ArchSpec


def validation_clips(spec: ArchSpec, val_list: str | Path, count: int, *, views: tuple[int, int] = (1, 1)) -> list[torch.Tensor]:
    """The first ``count`` test views of ``val_list``'s videos (``views`` per video, in order),
    decoded as evaluation decodes them, each ``(1, C, T, H, W)``."""
    dataset = VideoDataset(load_annotations(val_list), spec=spec, train=False, num_clips=views[0], num_crops=views[1])
    return [dataset[i]["clip"].unsqueeze(0) for i in range(min(count, len(dataset)))]


def compare_models(models: Mapping[str, torch.nn.Module | str | Path], val_list: str | Path, *, baseline: str,
                   views: tuple[int, int] = (1, 1), latency_clips: int = 48, threads: int = 1,
                   repeats: int = 3, evaluated: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per model: its evaluation on ``val_list`` with ``views`` (``effvid eval``'s keys),
    its mean batch-1 latency per view over ``latency_clips`` validation views with ``threads``
    torch threads (``latency_ms``), and ``latency_saving_per_gmacs_saving`` against ``baseline``
    (wall-clock saving over GMACs saving per view). The models must read the same input.
    ``evaluated`` holds evaluations already made (``EvalResult.to_dict()`` on ``val_list`` with
    ``views``) by model name; those models are only timed."""
    built = {name: load_model(m) if isinstance(m, (str, Path)) else m for name, m in models.items()}
    if baseline not in built:
        raise ConfigError(f"compare: baseline {baseline!r} is not among the models ({', '.join(built)})")
    geometry = {(m.spec.num_frames, m.spec.frame_stride, m.spec.crop_size, m.spec.test_crop, m.spec.sampling,
                 tuple(m.spec.mean), tuple(m.spec.std)) for m in built.values()}
    if len(geometry) != 1:
        raise ConfigError(f"compare: the models read different inputs ({sorted(geometry)}); compare models of one geometry")
    known = evaluated or {}
    for name, row in known.items():
        if name in built and tuple(row.get("views", views)) != tuple(views):
            raise ConfigError(f"compare: {name!r} was evaluated with views {row['views']}, not {list(views)}")
    rows = [{"model": name, **(dict(known[name]) if name in known else
                               evaluate(model, val_list, views=views, num_workers=1).to_dict())}
            for name, model in built.items()]
    clips = validation_clips(next(iter(built.values())).spec, val_list, latency_clips, views=views)
    with torch_threads(threads):
        timing = compare_on_clips({name: prepare_for_inference(m) for name, m in built.items()}, clips, repeats=repeats)
    for row in rows:
        row.update(latency_ms=timing[row["model"]]["latency_ms_mean"], latency_threads=threads,
                   latency_clips=len(clips))
    base = next(r for r in rows if r["model"] == baseline)
    for row in rows:
        row["latency_saving_per_gmacs_saving"] = saving_ratio(
            latency=row["latency_ms"], base_latency=base["latency_ms"], gmacs=row["gmacs_per_view"],
            base_gmacs=base["gmacs_per_view"])
    return rows


def executed_on_dataset(model: torch.nn.Module, val_list: str | Path, *, views: tuple[int, int] = (1, 1),
                        chunk: int = 24, rtol: float = 1e-6, atol: float = 1e-9) -> dict[str, Any]:
    """``model``'s reported cost against the MACs its eval-mode forward executed, on every test view
    of ``val_list`` (decoded as evaluation decodes them, counted one view at a time): the views,
    the largest absolute difference, how many differ beyond ``rtol``/``atol``, the executed mean,
    min and max GMACs, and every view's reported GMACs in view order (``reported_gmacs``). A model
    that reports no cost is a :class:`ConfigError`."""
    dataset = VideoDataset(load_annotations(val_list), spec=model.spec, train=False, num_clips=views[0],
                           num_crops=views[1])
    executed, reported = [], []
    for start in range(0, len(dataset), chunk):
        x = torch.cat([dataset[i]["clip"].unsqueeze(0) for i in range(start, min(start + chunk, len(dataset)))])
        result = count_executed(model, x)
        if result.reported is None:
            raise ConfigError(f"executed check: {type(model).__name__} reports no per-sample cost")
        executed.append(result.per_sample_gmacs)
        reported.append(result.reported)
    ran, said = torch.cat(executed), torch.cat(reported)
    mismatched = int((~torch.isclose(ran, said, rtol=rtol, atol=atol)).sum())
    return {"views": len(ran), "views_per_video": list(views), "max_abs_diff_gmacs": float((ran - said).abs().max()),
            "mismatched_views": mismatched, "all_equal": mismatched == 0, "rtol": rtol, "atol_gmacs": atol,
            "executed_gmacs_mean": float(ran.mean()), "executed_gmacs_min": float(ran.min()),
            "executed_gmacs_max": float(ran.max()), "reported_gmacs": said.tolist()}
