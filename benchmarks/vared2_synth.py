"""VA-RED2 benchmark on SynthActions-small (writes JSON; not a test).

For each backbone, R(2+1)D-18 and X3D-M (``--skip-x3d`` leaves X3D out), trains the static base
and VA-RED2 from it, both resumable in ``--run-dir``:

* R(2+1)D: the base from ``configs/demo/r2plus1d_synth_small.yaml`` (or ``--base CHECKPOINT``),
  VA-RED2 from it with ``configs/vared2/r2plus1d_synth_small.yaml`` (``init_from`` the base);
* X3D: the base from ``configs/vared2/x3d_synth_small_base.yaml`` (or ``--x3d-base CHECKPOINT``),
  VA-RED2 from it with ``configs/vared2/x3d_synth_small.yaml``;

then reports, per backbone, the dynamic model against its own base:

1. video top-1 with the base checkpoint's validation views (``transforms.val_views``), GMACs per
   clip (view) of the dynamic model, mean, min and max over the validation views, against the
   base's, the GMACs saving and the top-1 difference;
2. batch-1 CPU latency on validation clips, both models prepared for inference the same way
   (:func:`~effvid.models.prepare_for_inference`, same threads), interleaved clip by clip
   (:func:`~effvid.engine.compare.compare_models`), with the ratio of wall-clock saving to
   GMACs saving; the same at batch 8: validation clips grouped into batches of 8, both models
   timed on the same batches, interleaved batch by batch, the median of ``--repeats`` runs per
   batch (:func:`compare_on_batches`), the ratio taken on the GMACs the timed clips reported;
3. the per-layer split of the GMACs saved against the time saved (:func:`wrapped_layer_split`):
   for every wrapped convolution, the GMACs it executed and the ms it took in the base and in
   the dynamic model (its gate, chosen convolution and cheap rebuild included), plus what lies
   outside the wrapped layers, on ``--layer-clips`` validation clips;
4. the frame-skipping bound (:func:`frame_skipping_bound`): the base with every wrapped
   convolution run on every other frame and its frames copied (:class:`EveryOtherFrame`), no
   gate, against the base at batch 1 and at batch 8: the largest ratio of time saved to GMACs
   saved that the temporal choice can reach at this input once its decisions cost nothing;
5. the paper-scale latency (:func:`paper_scale_latency`) of each backbone's thesis network
   (R(2+1)D-18 at 16x128x128, X3D-M at 16x224x224; full width and depth, random weights, each
   layer forced to a drawn single-choice pattern) at batch 1 and at batch 8, with that
   network's frame-skipping bound: where a convolution is large enough that its time follows
   its MACs, and where it is not;
6. the cost the dynamic model reports against the executed-op count
   (:func:`effvid.cost.executed.count_executed`) on every validation view, with the largest
   absolute difference (:func:`effvid.engine.compare.executed_on_dataset`).

Expected (issue 11), reported either way: at least 20% fewer GMACs per clip than the base at no
more than 0.5 points of video top-1 lost; a per-clip cost that varies (min < mean < max);
latency saving / GMACs saving >= 0.7 at batch 1 and at batch 8; reported cost == executed cost.

    nice .venv/bin/python benchmarks/vared2_synth.py [--data data/bench] [--run-dir runs/bench-vared2-synth] \\
        [--out benchmarks/results/vared2_synth.json] [--base CHECKPOINT] [--x3d-base CHECKPOINT] [--skip-x3d] \\
        [--paper-clips 3]

Run it on a quiet machine: the latencies are only meaningful when nothing else runs (the load
average before and after each backbone's timing is recorded, with a warning when another process
competed, and the cores other processes kept busy during the in-process timing).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from effvid.cost.executed import EXECUTED_FORMULAS, count_executed
from effvid.cost.latency import (
    CpuWatch,
    compare_on_clips,
    load_record,
    machine_load,
    random_input_saving,
    saving_ratio,
    timed_runs,
    torch_threads,
)
from effvid.cost.static import count_spec
from effvid.data.synthetic import ensure_synthactions
from effvid.engine.checkpoint import load_model, read_sidecar, resolve_checkpoint
from effvid.engine.compare import compare_models, executed_on_dataset, validation_clips
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.methods.vared2.cheap import empty_as, place_repeated
from effvid.models import create_from_spec, default_spec, replace_modules
from effvid.models.base import model_output
from effvid.spec import MethodSpec

CONFIGS = Path(__file__).resolve().parents[1] / "effvid" / "configs"
BACKBONES = {
    "r2plus1d": {"label": "R(2+1)D", "base": CONFIGS / "demo" / "r2plus1d_synth_small.yaml",
                 "vared2": CONFIGS / "vared2" / "r2plus1d_synth_small.yaml"},
    "x3d": {"label": "X3D", "base": CONFIGS / "vared2" / "x3d_synth_small_base.yaml",
            "vared2": CONFIGS / "vared2" / "x3d_synth_small.yaml"},
}
REST = "(rest)"
"""The row of :func:`wrapped_layer_split` holding everything outside the wrapped layers."""


# ---------------------------------------------------------------------------------------------
# Training


def train_backbone(key: str, *, data: Sequence[str], run_dir: Path, base: Path | None,
                   base_epochs: int | None) -> dict[str, Any]:
    """Train (or resume, or return at once) the base of backbone ``key`` into ``run_dir/<key>-base``
    unless ``base`` (a checkpoint or run folder) is given, then VA-RED2 from it into
    ``run_dir/<key>-vared2``; the checkpoint stems, the base's validation views and wall times."""
    paths = BACKBONES[key]
    start = time.perf_counter()
    if base is None:
        epochs = [f"epochs={base_epochs}", f"eval_every={base_epochs}"] if base_epochs else []
        cfg = load_train_config(paths["base"], [f"run_dir={run_dir / f'{key}-base'}", *data, *epochs])
        result = train(cfg)
        base_stem = Path(result.best_checkpoint or result.last_checkpoint)
        fallback_views = tuple(cfg.data.val_views)
    else:
        base_stem = resolve_checkpoint(base)
        fallback_views = None
    base_s = time.perf_counter() - start
    dyn_cfg = load_train_config(paths["vared2"], [f"run_dir={run_dir / f'{key}-vared2'}", f"init_from={base_stem}",
                                                  *data])
    result = train(dyn_cfg)
    dyn_stem = Path(result.best_checkpoint or result.last_checkpoint)
    views = (read_sidecar(base_stem).get("transforms") or {}).get("val_views") or fallback_views \
        or tuple(dyn_cfg.data.val_views)
    return {"base": base_stem, "vared2": dyn_stem, "views": (int(views[0]), int(views[1])),
            "base_train_wall_time_s": base_s, "vared2_train_wall_time_s": time.perf_counter() - start - base_s}


# ---------------------------------------------------------------------------------------------
# Measurement helpers


def batched(clips: Sequence[Tensor], size: int) -> list[Tensor]:
    """Consecutive ``(1, C, T, H, W)`` clips stacked into full batches of ``size`` (the rest dropped)."""
    return [torch.cat(list(clips[i : i + size])) for i in range(0, len(clips) - size + 1, size)]


def compare_on_batches(models: Mapping[str, nn.Module], batches: Sequence[Tensor], *, repeats: int = 3,
                       warmup: int = 2) -> dict[str, dict[str, Any]]:
    """Several (prepared) models timed on the same real batches, interleaved batch by batch (the
    order rotates from batch to batch), like :func:`~effvid.cost.latency.compare_on_clips` at a
    batch above 1. A batch's time is the median of ``repeats`` forwards, after ``warmup`` untimed
    ones of the first batch. Per model: mean and median ms per batch, ms per clip at the mean,
    clips per second, and the mean, min and max cost per clip it reported (``None`` if static)."""
    if repeats < 1 or not batches or not models:
        raise ValueError("compare_on_batches needs repeats >= 1, at least one batch and one model")
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    costs: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in names:
            timed_runs(lambda m=models[name]: model_output(m, batches[0]), warmup)
        for index, batch in enumerate(batches):
            for name in names[index % len(names):] + names[: index % len(names)]:
                outputs: list[Any] = []
                run = timed_runs(lambda m=models[name], b=batch, o=outputs: o.append(model_output(m, b)), repeats)
                times[name].append(statistics.median(run))
                if outputs[-1].cost is not None:
                    costs[name].extend(float(c) for c in outputs[-1].cost.double().cpu().reshape(-1))
    rows = {}
    for name in names:
        mean = statistics.fmean(times[name])
        clips = sum(int(b.shape[0]) for b in batches)
        cost = costs[name]
        rows[name] = {"batches": len(batches), "batch": int(batches[0].shape[0]), "clips": clips,
                      "latency_ms_mean": mean * 1000.0, "latency_ms_median": statistics.median(times[name]) * 1000.0,
                      "ms_per_clip": mean * 1000.0 / batches[0].shape[0],
                      "clips_per_s": clips / sum(times[name]),
                      "gmacs_mean": statistics.fmean(cost) if cost else None, "gmacs_min": min(cost) if cost else None,
                      "gmacs_max": max(cost) if cost else None, "repeats": repeats, "warmup": warmup}
    return rows


def layer_gmacs(model: nn.Module, names: Sequence[str], inputs: Sequence[Tensor]) -> tuple[dict[str, float], float]:
    """Mean GMACs per input executed inside each module of ``names`` (all its children included)
    and in the whole ``forward_output``, counted with FlopCounterMode on real forwards (the
    convention of :mod:`effvid.cost.executed`).

    A layer's count is the counter's running total after its forward minus before it (forward
    pre/post hooks), not FlopCounterMode's per-module table: that names modules from the first
    module *called*, and a VA-RED2 model's ``forward_output`` calls its stages directly (no
    root ``__call__``), so stages would share names there."""
    per_layer = dict.fromkeys(names, 0.0)
    total = 0.0
    counter: list[FlopCounterMode] = []
    started: dict[str, int] = {}

    def pre(name: str):
        def hook(module: nn.Module, args: Any) -> None:
            started[name] = counter[0].get_total_flops()
        return hook

    def post(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            per_layer[name] += (counter[0].get_total_flops() - started.pop(name)) / 2 / 1e9
        return hook

    handles = []
    try:
        for name in names:
            module = model.get_submodule(name)
            handles.append(module.register_forward_pre_hook(pre(name)))
            handles.append(module.register_forward_hook(post(name)))
        with torch.no_grad():
            for x in inputs:
                counter[:] = [FlopCounterMode(display=False, depth=None, custom_mapping=EXECUTED_FORMULAS)]
                with counter[0]:
                    model_output(model, x)
                total += counter[0].get_total_flops() / 2 / 1e9
    finally:
        for handle in handles:
            handle.remove()
    return {name: value / len(inputs) for name, value in per_layer.items()}, total / len(inputs)


def time_named_layers(models: Mapping[str, nn.Module], names: Sequence[str], inputs: Sequence[Tensor], *,
                      repeats: int = 3, warmup: int = 2) -> dict[str, dict[str, Any]]:
    """ms per forward spent in each module of ``names`` (forward pre/post hooks around the whole
    module, children included) and in the whole ``forward_output``, for every model, interleaved
    input by input (the order rotates). Per model: ``layers`` (ms per forward by name), ``total_ms``."""
    spent = {m: dict.fromkeys(names, 0.0) for m in models}
    totals = dict.fromkeys(models, 0.0)
    started: dict[tuple[str, str], float] = {}
    handles = []

    def pre(model: str, name: str):
        def hook(module: nn.Module, args: Any) -> None:
            started[model, name] = time.perf_counter()
        return hook

    def post(model: str, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            spent[model][name] += time.perf_counter() - started.pop((model, name))
        return hook

    order = list(models)
    with torch.no_grad():
        for m in order:
            timed_runs(lambda mod=models[m]: model_output(mod, inputs[0]), warmup)
        try:
            for m in order:
                for name in names:
                    module = models[m].get_submodule(name)
                    handles.append(module.register_forward_pre_hook(pre(m, name)))
                    handles.append(module.register_forward_hook(post(m, name)))
            for index, x in enumerate(inputs):
                for m in order[index % len(order):] + order[: index % len(order)]:
                    totals[m] += sum(timed_runs(lambda mod=models[m], c=x: model_output(mod, c), repeats))
        finally:
            for handle in handles:
                handle.remove()
    runs = repeats * len(inputs)
    return {m: {"layers": {n: s * 1000.0 / runs for n, s in spent[m].items()}, "total_ms": totals[m] * 1000.0 / runs}
            for m in order}


def wrapped_layer_split(base: nn.Module, dynamic: nn.Module, names: Sequence[str], clips: Sequence[Tensor], *,
                        repeats: int = 3) -> dict[str, Any]:
    """Per wrapped layer (``names``, present under the same names in both prepared models): the
    executed GMACs and ms per clip of the base and of the dynamic model, the GMACs and ms saved,
    their ratio, and each layer's share of all GMACs and all time saved; the row :data:`REST`
    holds the rest of the network (total minus the wrapped layers). Batch-1 clips."""
    base_gmacs, base_total = layer_gmacs(base, names, clips)
    dyn_gmacs, dyn_total = layer_gmacs(dynamic, names, clips)
    times = time_named_layers({"base": base, "dynamic": dynamic}, names, clips, repeats=repeats)
    base_ms, dyn_ms = times["base"]["layers"], times["dynamic"]["layers"]
    rows = [{"layer": n, "base_gmacs": base_gmacs[n], "dynamic_gmacs": dyn_gmacs[n], "base_ms": base_ms[n],
             "dynamic_ms": dyn_ms[n]} for n in names]
    rows.append({"layer": REST, "base_gmacs": base_total - sum(base_gmacs.values()),
                 "dynamic_gmacs": dyn_total - sum(dyn_gmacs.values()),
                 "base_ms": times["base"]["total_ms"] - sum(base_ms.values()),
                 "dynamic_ms": times["dynamic"]["total_ms"] - sum(dyn_ms.values())})
    saved_gmacs = base_total - dyn_total
    saved_ms = times["base"]["total_ms"] - times["dynamic"]["total_ms"]
    for row in rows:
        row["gmacs_saved"] = row["base_gmacs"] - row["dynamic_gmacs"]
        row["ms_saved"] = row["base_ms"] - row["dynamic_ms"]
        row["share_of_gmacs_saved"] = row["gmacs_saved"] / saved_gmacs if saved_gmacs else None
        row["share_of_ms_saved"] = row["ms_saved"] / saved_ms if saved_ms else None
        row["time_saving_per_gmacs_saving"] = (
            saving_ratio(latency=row["dynamic_ms"], base_latency=row["base_ms"], gmacs=row["dynamic_gmacs"],
                         base_gmacs=row["base_gmacs"]) if row["base_gmacs"] > 0 and row["base_ms"] > 0 else None)
    wrapped = rows[:-1]
    return {"clips": len(clips), "repeats": repeats, "rows": rows,
            "total": {"base_gmacs": base_total, "dynamic_gmacs": dyn_total, "base_ms": times["base"]["total_ms"],
                      "dynamic_ms": times["dynamic"]["total_ms"], "gmacs_saved": saved_gmacs, "ms_saved": saved_ms},
            "wrapped": {"gmacs_saved": sum(r["gmacs_saved"] for r in wrapped),
                        "ms_saved": sum(r["ms_saved"] for r in wrapped),
                        "base_ms": sum(r["base_ms"] for r in wrapped),
                        "dynamic_ms": sum(r["dynamic_ms"] for r in wrapped)}}


class EveryOtherFrame(nn.Module):
    """A base convolution (one-frame kernel, temporal stride 1) run the way a free gate that picks
    "every other frame" runs it: on every other input frame, each computed frame then copied to
    the frame after it (:func:`~effvid.methods.vared2.cheap.place_repeated`). No gate, no weight,
    no BatchNorm pass: what the temporal choice saves at best once its decisions cost nothing."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if conv.kernel_size[0] != 1 or conv.stride[0] != 1 or conv.padding[0] != 0:
            raise ValueError(f"EveryOtherFrame needs a one-frame kernel at temporal stride 1, got {conv}")
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x[:, :, ::2])
        out = empty_as(y, (y.shape[0], y.shape[1], x.shape[2], *y.shape[3:]))
        place_repeated(out, y, 2)
        return out


def frame_skipping_bound(base: nn.Module, patterns: Sequence[str], clips: Sequence[Tensor], batches: Sequence[Tensor], *,
                         repeats: int) -> dict[str, Any]:
    """``base`` (prepared for inference) against a copy of it with every convolution that
    ``patterns`` wraps replaced by :class:`EveryOtherFrame` (after preparation, so it keeps its
    folded BatchNorm), timed interleaved at batch 1 on ``clips`` and on ``batches`` (all of one
    size): the GMACs saving, the time savings and their ratios, i.e. the most that VA-RED2's
    temporal choice could turn into time at this input if its gates, weights and grouping were
    free."""
    bound = copy.deepcopy(base)
    replaced = replace_modules(bound, lambda name, _: any(fnmatch(name, p) for p in patterns),
                               lambda _, conv: EveryOtherFrame(conv))
    base_gmacs = count_executed(base, clips[0]).per_sample_gmacs.item()
    bound_gmacs = count_executed(bound, clips[0]).per_sample_gmacs.item()
    models = {"base": base, "bound": bound}
    single = compare_on_clips(models, clips, repeats=repeats)
    grouped = compare_on_batches(models, batches, repeats=repeats)
    result: dict[str, Any] = {"layers": replaced, "clips": len(clips), "base_gmacs": base_gmacs,
                              "bound_gmacs": bound_gmacs, "gmacs_saving": 1 - bound_gmacs / base_gmacs}
    for label, timing in (("batch1", single), (f"batch{batches[0].shape[0]}", grouped)):
        base_ms, bound_ms = timing["base"]["latency_ms_mean"], timing["bound"]["latency_ms_mean"]
        result[label] = {"latency_ms": {"base": base_ms, "bound": bound_ms}, "latency_saving": 1 - bound_ms / base_ms,
                         "latency_saving_per_gmacs_saving": saving_ratio(
                             latency=bound_ms, base_latency=base_ms, gmacs=bound_gmacs, base_gmacs=base_gmacs)}
    return result


PAPER_USAGE = {"full": 0.25, "channels/2": 0.25, "frames/2": 0.25, "both/2": 0.25}
"""How often each pattern is drawn for a paper-scale layer (about a third of the GMACs saved)."""
PATTERNS = {"full": (0, 0), "channels/2": (1, 0), "frames/2": (0, 1), "both/2": (1, 1)}
"""The single-choice decisions a paper-scale layer is forced to: ``(channel choice, temporal choice)``."""


PAPER_SCALE = {
    "r2plus1d": {"label": "R(2+1)D-18", "name": "r2plus1d_18", "frames": 16, "size": 128, "overrides": {}},
    "x3d": {"label": "X3D-M", "name": "x3d_m", "frames": 16, "size": 224,
            "overrides": {"family": {"activation": "relu_except_se"}}},
}
"""The thesis's networks and inputs (full width and depth; X3D-M in its variant without Swish
outside the SE blocks), by backbone key."""


def paper_scale_latency(key: str, usage: Mapping[str, float], *, clips: int, batch: int, repeats: int,
                        threads: int) -> dict[str, Any]:
    """VA-RED2 on the thesis's network of backbone ``key`` (:data:`PAPER_SCALE`, random
    weights) against the plain network prepared the same way, at batch 1 on ``clips`` random
    clips and at ``batch`` on one batch of them, plus the frame-skipping bound of that network
    (:func:`frame_skipping_bound`) on the same inputs. Each wrapped layer is forced to one
    pattern of :data:`PATTERNS`, drawn once with probabilities ``usage`` (a gate with zero
    weights and a bias of +1 on the chosen choices, -1 on the others): the cost pattern of a
    trained model, not a trained gate."""
    scale = PAPER_SCALE[key]
    frames, size = scale["frames"], scale["size"]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    spec = default_spec(scale["name"], num_classes=200, crop_size=size, num_frames=frames,
                        method=MethodSpec("vared2", {}), **scale["overrides"])
    dynamic = create_from_spec(spec)
    names, probs = list(usage), torch.tensor([usage[n] for n in usage])
    drawn = []
    with torch.no_grad():
        for layer in dynamic.dynamic_layers():
            pattern = names[int(torch.multinomial(probs, 1, generator=generator))]
            channel, time_choice = PATTERNS[pattern]
            bias = torch.full((layer.gate.n_t + layer.gate.n_c,), -1.0)
            bias[time_choice] = 1.0
            bias[layer.gate.n_t + channel] = 1.0
            layer.gate.fc2.weight.zero_()
            layer.gate.fc2.bias.copy_(bias)
            drawn.append(pattern)
    base = create_from_spec(spec.replace(method=None))
    base_gmacs = count_spec(spec.replace(method=None)).gmacs
    inputs = [torch.randn(1, 3, frames, size, size) for _ in range(max(clips, batch))]
    single = random_input_saving(base, dynamic, inputs[:clips], base_gmacs=base_gmacs, repeats=repeats,
                                 threads=threads)
    grouped = batched(inputs, batch)[:1]
    with torch_threads(threads):  # both models were prepared by random_input_saving
        timing = compare_on_batches({"base": base, "VA-RED2": dynamic}, grouped, repeats=repeats)
        bound = frame_skipping_bound(base, dynamic.settings.wrap, inputs[:clips], grouped, repeats=repeats)
    b, d = timing["base"], timing["VA-RED2"]
    result: dict[str, Any] = {
        "network": scale["label"], "input": f"{frames}x{size}x{size}", "usage": dict(usage),
        "layer_patterns": dict(zip(dynamic.layer_names, drawn)), "clips": clips, "repeats": repeats,
        "threads": threads, "base_gmacs": base_gmacs, "vared2_gmacs": single["dynamic_gmacs"],
        "gmacs_saving": single["gmacs_saving"],
        "batch1": {"base_latency_ms": single["base_latency_ms"], "vared2_latency_ms": single["dynamic_latency_ms"],
                   "latency_saving": single["latency_saving"],
                   "latency_saving_per_gmacs_saving": single["latency_saving_per_gmacs_saving"]},
        f"batch{batch}": {"base_latency_ms": b["latency_ms_mean"], "vared2_latency_ms": d["latency_ms_mean"],
                          "latency_saving": 1 - d["latency_ms_mean"] / b["latency_ms_mean"],
                          "latency_saving_per_gmacs_saving": saving_ratio(
                              latency=d["latency_ms_mean"], base_latency=b["latency_ms_mean"], gmacs=d["gmacs_mean"],
                              base_gmacs=base_gmacs)},
        "frame_skipping_bound": {k: bound[k] for k in ("layers", "gmacs_saving", "batch1", f"batch{batch}")},
    }
    return result


# ---------------------------------------------------------------------------------------------
# One backbone


def measure_backbone(key: str, trained: dict[str, Any], val: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the module docstring for one trained (base, VA-RED2) pair."""
    views = trained["views"]
    base, dynamic = load_model(trained["base"]), load_model(trained["vared2"])
    names = list(dynamic.layer_names)
    load_before = machine_load()
    # evaluation with the base's views, then batch-1 latency, both models prepared (in place) the same way
    rows = compare_models({"base": base, "VA-RED2": dynamic}, val, baseline="base", views=views,
                          latency_clips=args.latency_clips, threads=args.threads, repeats=args.repeats)
    clips = validation_clips(dynamic.spec, val, max(args.batch_clips, args.layer_clips), views=views)
    with torch_threads(args.threads), CpuWatch() as watch:
        batch8 = compare_on_batches({"base": base, "VA-RED2": dynamic}, batched(clips[: args.batch_clips], args.batch),
                                    repeats=args.repeats)
        split = wrapped_layer_split(base, dynamic, names, clips[: args.layer_clips], repeats=args.repeats)
        bound = frame_skipping_bound(base, dynamic.settings.wrap, clips[: args.batch_clips],
                                     batched(clips[: args.batch_clips], args.batch), repeats=args.repeats)
    load = load_record(load_before, machine_load(), args.threads, other_cores=watch.other_cores)
    if load["warning"]:
        print(f"warning ({BACKBONES[key]['label']}): {load['warning']}", file=sys.stderr)
    executed = executed_on_dataset(dynamic, val, views=views)

    by_name = {r["model"]: r for r in rows}
    b, d = by_name["base"], by_name["VA-RED2"]
    bb, db = batch8["base"], batch8["VA-RED2"]
    timed = executed["reported_gmacs"][: d["latency_clips"]]
    timed_gmacs = statistics.fmean(timed) if timed else None
    batch1_timed_ratio = None if timed_gmacs is None else saving_ratio(
        latency=d["latency_ms"], base_latency=b["latency_ms"], gmacs=timed_gmacs, base_gmacs=b["gmacs_per_view"])
    batch8_ratio = saving_ratio(latency=db["latency_ms_mean"], base_latency=bb["latency_ms_mean"],
                                gmacs=db["gmacs_mean"], base_gmacs=b["gmacs_per_view"])
    batch8_eval_ratio = saving_ratio(latency=db["latency_ms_mean"], base_latency=bb["latency_ms_mean"],
                                     gmacs=d["gmacs_per_view"], base_gmacs=b["gmacs_per_view"])
    summary = {
        "views": f"{views[0]}x{views[1]}",
        "base_top1": b["video_top1"], "vared2_top1": d["video_top1"],
        "top1_difference_points": 100 * (d["video_top1"] - b["video_top1"]),
        "base_gmacs_per_clip": b["gmacs_per_view"],
        "vared2_gmacs_per_clip": {"mean": d["gmacs_per_view"], "min": d["gmacs_per_view_min"],
                                  "max": d["gmacs_per_view_max"], "dense": d["dense_gmacs_per_view"]},
        "gmacs_saving": 1 - d["gmacs_per_view"] / b["gmacs_per_view"],
        "batch1": {"latency_ms": {"base": b["latency_ms"], "VA-RED2": d["latency_ms"]},
                   "clips": d["latency_clips"], "threads": args.threads,
                   "latency_saving": 1 - d["latency_ms"] / b["latency_ms"],
                   "latency_saving_per_gmacs_saving": d["latency_saving_per_gmacs_saving"],
                   "timed_clips_gmacs_mean": timed_gmacs,
                   "latency_saving_per_gmacs_saving_on_timed_clips": batch1_timed_ratio},
        f"batch{args.batch}": {"latency_ms_per_batch": {"base": bb["latency_ms_mean"], "VA-RED2": db["latency_ms_mean"]},
                               "batches": db["batches"], "threads": args.threads,
                               "timed_clips_gmacs_mean": db["gmacs_mean"],
                               "latency_saving": 1 - db["latency_ms_mean"] / bb["latency_ms_mean"],
                               "latency_saving_per_gmacs_saving": batch8_ratio,
                               "latency_saving_per_gmacs_saving_on_eval_gmacs": batch8_eval_ratio},
        "layer_split_total": split["total"], "layer_split_wrapped": split["wrapped"],
        "frame_skipping_bound": {k: bound[k] for k in ("gmacs_saving", "batch1", f"batch{args.batch}")},
        "executed_vs_reported": {"views": executed["views"], "max_abs_diff_gmacs": executed["max_abs_diff_gmacs"],
                                 "mismatched_views": executed["mismatched_views"]},
    }
    s = summary
    expectations = {
        "gmacs_20pct_fewer_at_most_0.5pt_lost": s["gmacs_saving"] >= 0.2 and s["top1_difference_points"] >= -0.5,
        "cost_varies_min_lt_mean_lt_max": d["gmacs_per_view_min"] < d["gmacs_per_view"] < d["gmacs_per_view_max"],
        "latency_ratio_batch1_at_least_0.7": (d["latency_saving_per_gmacs_saving"] or 0) >= 0.7,
        f"latency_ratio_batch{args.batch}_at_least_0.7": (batch8_ratio or 0) >= 0.7,
        "executed_equals_reported": executed["mismatched_views"] == 0,
    }
    return {"backbone": BACKBONES[key]["label"],
            "checkpoints": {"base": str(trained["base"]), "VA-RED2": str(trained["vared2"])},
            "train_wall_time_s": {"base": trained["base_train_wall_time_s"], "VA-RED2": trained["vared2_train_wall_time_s"]},
            "wrapped_layers": names, "load": load, "rows": rows, f"batch{args.batch}": batch8, "layer_split": split,
            "frame_skipping_bound": bound,
            "executed_check": {k: v for k, v in executed.items() if k != "reported_gmacs"},
            "summary": summary, "expectations": expectations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="cache for SynthActions-small")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-vared2-synth"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vared2_synth.json"))
    parser.add_argument("--base", type=Path, help="a trained base R(2+1)D checkpoint (or run folder): skip its training")
    parser.add_argument("--x3d-base", type=Path, help="a trained base X3D checkpoint (or run folder): skip its training")
    parser.add_argument("--skip-x3d", action="store_true", help="leave X3D out (R(2+1)D only)")
    parser.add_argument("--base-epochs", type=int, help="epochs of the bases trained here (default: their configs')")
    parser.add_argument("--latency-clips", type=int, default=96, help="validation clips timed per model at batch 1")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched latency figure")
    parser.add_argument("--batch-clips", type=int, default=96, help="validation clips timed per model, in batches")
    parser.add_argument("--layer-clips", type=int, default=8, help="validation clips for the per-layer split")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per clip or batch (their median counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the latency figures")
    parser.add_argument("--paper-clips", type=int, default=3,
                        help="batch-1 clips of each paper-scale latency figure (0 skips them)")
    args = parser.parse_args()
    if args.batch_clips < args.batch:
        parser.error(f"--batch-clips ({args.batch_clips}) must hold at least one batch of --batch {args.batch}")
    if args.layer_clips < 1 or args.latency_clips < 1:
        parser.error("--layer-clips and --latency-clips must be at least 1")

    manifest = ensure_synthactions(args.data / "synthactions-small", "small")
    val = manifest.annotations["val"]
    data = [f"data.train={manifest.annotations['train']}", f"data.val={val}"]
    keys = ["r2plus1d"] + ([] if args.skip_x3d else ["x3d"])
    bases = {"r2plus1d": args.base, "x3d": args.x3d_base}
    start = time.perf_counter()
    trained = {key: train_backbone(key, data=data, run_dir=args.run_dir, base=bases[key], base_epochs=args.base_epochs)
               for key in keys}
    train_s = time.perf_counter() - start
    backbones = {key: measure_backbone(key, trained[key], val, args) for key in keys}
    paper: dict[str, Any] = {}
    for key in keys if args.paper_clips else []:
        load_before = machine_load()
        paper[PAPER_SCALE[key]["label"]] = paper_scale_latency(key, PAPER_USAGE, clips=args.paper_clips,
                                                               batch=args.batch, repeats=args.repeats,
                                                               threads=args.threads)
        paper[PAPER_SCALE[key]["label"]]["load"] = load_record(load_before, machine_load(), args.threads)

    result = {
        "benchmark": "vared2_synth", "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "run_dir": str(args.run_dir), "train_wall_time_s": train_s, "threads": args.threads,
        "base_epochs": args.base_epochs, "load": {BACKBONES[k]["label"]: backbones[k]["load"] for k in keys},
        "backbones": {BACKBONES[k]["label"]: backbones[k] for k in keys},
        "summary": {BACKBONES[k]["label"]: backbones[k]["summary"] for k in keys},
        "paper_scale_latency": paper or None,
    }
    expectations: dict[str, Any] = {BACKBONES[k]["label"]: backbones[k]["expectations"] for k in keys}
    for label, row in paper.items():
        expectations[f"{label}_paper_scale"] = {
            f"latency_ratio_{batch}_at_least_0.7": (row[batch]["latency_saving_per_gmacs_saving"] or 0) >= 0.7
            for batch in ("batch1", f"batch{args.batch}")}
    expectations["all_met"] = all(all(e.values()) if isinstance(e, dict) else e for e in expectations.values())
    result["expectations"] = expectations
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"summary": result["summary"], "expectations": expectations}, indent=1))


if __name__ == "__main__":
    main()
