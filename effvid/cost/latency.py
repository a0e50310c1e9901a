"""Measured latency: wall time of forwards run the way users run a model.

A model is timed after :func:`~effvid.models.inference.prepare_for_inference` (eval mode, no
gradients, the default inference variant: channels-last weights), with a stated number of torch
threads, as the median of repeated runs after untimed warm-up runs. Two CPU-heavy processes on
a small machine slow each other several times over, so figures are only meaningful on a quiet
machine, and savings are best measured as ratios within one run.

One timer serves ``effvid bench``, PAS's latency column and the scripts in ``benchmarks/``:

* :func:`timed_runs` times repeated calls (synchronising CUDA when asked);
  :func:`interleaved_runs` times several forwards round by round, for savings as ratios;
* :func:`time_batches` gives median latency, throughput and achieved GMAC/s per batch size;
* :func:`time_clips` times a dynamic model on real clips, one at a time, beside the cost each
  clip reported (``ModelOutput.cost``); :func:`compare_on_clips` times several models on the
  same clips, interleaved clip by clip, for savings measured as ratios in one run;
* :func:`time_layers` splits the measured forward time over the layers of :func:`leaf_layers`
  (leaf conv and linear modules, and a method's dynamic layers as wholes; forward pre/post
  hooks), and :func:`layer_table` sets it beside their share of the GMACs;
* :func:`machine_load`, :func:`competing` and :func:`load_record` record the 1-minute load
  average before and after a measurement and say when another process competed;
  :class:`CpuWatch` also measures the cores other processes kept busy during it, which the
  lagging load average misses for a competitor of a few seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from effvid.cost.executed import EXECUTED_FORMULAS
from effvid.cost.static import spec_input_shape
from effvid.models import create_from_spec, prepare_for_inference
from effvid.models.base import model_output
from effvid.models.inference import DEFAULT_VARIANT, Variant
from effvid.spec import ArchSpec

COMPETING_MARGIN = 0.5
"""A load average above the measuring threads plus this margin means another process competed."""

COMPETING_WARNING = "another process competed, the figures are not quiet-machine figures"

OTHER_OPS = "(other ops)"
"""The row of :func:`layer_table` holding what no layer of :func:`leaf_layers` accounts for."""

LEAF_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


# ---------------------------------------------------------------------------------------------
# The machine: load average, threads, device


def machine_load() -> float:
    """The 1-minute load average (``nan`` where the platform has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return math.nan


def competing(load: float, threads: int) -> bool:
    """Whether a 1-minute ``load`` means another process competed with ``threads`` measuring threads."""
    return not math.isnan(load) and load > threads + COMPETING_MARGIN


def load_record(before: float, after: float, threads: int, *, other_cores: float | None = None) -> dict[str, Any]:
    """The load fields every measurement reports: both 1-minute averages, the threshold
    (``threads`` + :data:`COMPETING_MARGIN`), ``competing`` and ``warning`` (``None`` when quiet).

    The 1-minute average lags (an exponential average over about a minute), so a competitor
    that ran for a few seconds of a short measurement barely moves it. ``other_cores`` (from
    :class:`CpuWatch`: the mean number of cores other processes kept busy during the
    measurement) catches those: above :data:`OTHER_CORES_LIMIT` it counts as competing too.
    """
    by_load = competing(before, threads) or competing(after, threads)
    by_cpu = other_cores is not None and other_cores > OTHER_CORES_LIMIT
    reasons = []
    if by_load:
        reasons.append(f"1-minute load average {before:.2f} before, {after:.2f} after, above {threads} threads + "
                       f"{COMPETING_MARGIN}")
    if by_cpu:
        reasons.append(f"other processes kept {other_cores:.2f} cores busy during the measurement")
    return {"load_average_before": before, "load_average_after": after,
            "load_threshold": threads + COMPETING_MARGIN, "other_cpu_cores": other_cores,
            "competing": by_load or by_cpu, "warning": f"{'; '.join(reasons)}: {COMPETING_WARNING}" if reasons else None}


def load_warning(before: float, after: float, threads: int) -> str | None:
    """The one-line warning for a measurement whose load average says another process competed."""
    return load_record(before, after, threads)["warning"]


OTHER_CORES_LIMIT = 0.1
"""Mean cores kept busy by other processes above which a measurement counts as competed.

Quiet runs of ``effvid bench`` on this project's 2-core CPU measured 0.01-0.03; one with 0.23
(a test run starting) had TSM-R50's batch-8 median 36% slower (5.13 s against 3.78 s), while
the 1-minute load average stayed below the threads + 0.5."""


def _cpu_times() -> tuple[float, float, float] | None:
    """(wall s, CPU s all processes spent busy, CPU s this process spent), or ``None`` without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(values) - values[3] - values[4]
    own = os.times()
    return time.perf_counter(), busy / ticks, own.user + own.system


class CpuWatch:
    """The cores other processes kept busy while the block ran: all CPU time the kernel counted
    (``/proc/stat``) minus this process's own (``os.times``), over the wall time.
    ``other_cores`` is ``None`` where ``/proc/stat`` is missing (not Linux)."""

    other_cores: float | None = None

    def __enter__(self) -> CpuWatch:
        self._start = _cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_times()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return
        wall = end[0] - self._start[0]
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        self.other_cores = max(others, 0.0) / wall


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads, restoring the previous count after."""
    if threads < 1:
        raise ValueError("threads must be >= 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def synchronizer(device: torch.device | str) -> Callable[[], None] | None:
    """What to call before reading the clock on ``device``: CUDA's synchronize, nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


# ---------------------------------------------------------------------------------------------
# Timing whole forwards


def timed_runs(forward: Callable[[], Any], repeats: int, *, synchronize: Callable[[], None] | None = None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``forward`` (no warm-up, no gradient context change).

    ``synchronize`` (e.g. :func:`synchronizer` of a CUDA device) is called before each start and
    before each stop, so asynchronous work is inside the call that launched it.
    """
    times = []
    for _ in range(repeats):
        if synchronize is not None:
            synchronize()
        start = time.perf_counter()
        forward()
        if synchronize is not None:
            synchronize()
        times.append(time.perf_counter() - start)
    return times


def interleaved_runs(forwards: Mapping[str, Callable[[], Any]], repeats: int, *, warmup: int = 1,
                     synchronize: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` calls of every forward, by name, interleaved: each round calls
    every forward once, in an order that rotates from round to round, so drift in the machine's
    speed falls on all of them alike. ``warmup`` untimed rounds come first."""
    if repeats < 1 or not forwards:
        raise ValueError("interleaved_runs needs repeats >= 1 and at least one forward")
    names = list(forwards)
    for name in names:
        timed_runs(forwards[name], warmup, synchronize=synchronize)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].extend(timed_runs(forwards[name], 1, synchronize=synchronize))
    return times


def cpu_latency_ms(spec: ArchSpec, *, repeats: int = 10, warmup: int = 2, threads: int = 1,
                   variant: Variant = DEFAULT_VARIANT) -> float:
    """Median wall time in milliseconds of one batch-1 forward of ``spec``'s network on the CPU.

    The network is built from the spec (weights do not change the work of a dense network),
    prepared for inference as ``variant`` and run with ``threads`` torch threads: ``warmup``
    untimed runs, then the median of ``repeats`` timed runs.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    with torch_threads(threads):
        model = prepare_for_inference(create_from_spec(spec), variant=variant)
        clip = torch.randn(spec_input_shape(spec))
        with torch.no_grad():
            timed_runs(lambda: model(clip), warmup)
            times = timed_runs(lambda: model(clip), repeats)
    return statistics.median(times) * 1000.0


def time_batches(model: nn.Module, input_shape: Sequence[int], batches: Sequence[int], *, gmacs: float,
                 repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu",
                 seed: int = 0) -> list[dict[str, Any]]:
    """Latency and throughput of ``model`` (prepared, on ``device``) on random clips, per batch size.

    For each ``B`` in ``batches``: ``warmup`` untimed then ``repeats`` timed forwards of a
    ``(B, *input_shape[1:])`` clip; the row holds the median, min and max latency in ms,
    clips per second at the median, and achieved GMAC/s (``gmacs`` per view x clips/s).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    device = torch.device(device)
    sync = synchronizer(device)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch in batches:
        clip = torch.randn((batch, *input_shape[1:]), generator=generator).to(device)
        with torch.no_grad():
            timed_runs(lambda c=clip: model(c), warmup, synchronize=sync)
            times = timed_runs(lambda c=clip: model(c), repeats, synchronize=sync)
        median = statistics.median(times)
        rows.append({"batch": batch, "latency_ms": median * 1000.0, "latency_ms_min": min(times) * 1000.0,
                     "latency_ms_max": max(times) * 1000.0, "clips_per_s": batch / median,
                     "gmac_per_s": gmacs * batch / median, "repeats": repeats, "warmup": warmup})
    return rows


def time_clips(model: nn.Module, clips: Sequence[Tensor], *, repeats: int = 1, warmup: int = 1,
               device: torch.device | str = "cpu") -> dict[str, Any]:
    """A dynamic model timed on real clips, one at a time, beside the cost each one reported.

    Each clip (``(1, C, T, H, W)``) runs through ``forward_output`` ``repeats`` times after
    ``warmup`` untimed runs of the first; a clip's time is the median of its runs. Returned:
    the mean and median time per clip in ms, clips per second and GMAC/s at the mean time,
    and the mean, min and max cost per clip from ``ModelOutput.cost`` (``None`` for a model
    that reports none).
    """
    if repeats < 1 or not clips:
        raise ValueError("time_clips needs repeats >= 1 and at least one clip")
    device = torch.device(device)
    sync = synchronizer(device)
    per_clip, costs = [], []
    with torch.no_grad():
        first = clips[0].to(device)
        timed_runs(lambda: model_output(model, first), warmup, synchronize=sync)
        for clip in clips:
            clip = clip.to(device)
            outputs: list[Any] = []
            per_clip.append(statistics.median(
                timed_runs(lambda c=clip, o=outputs: o.append(model_output(model, c)), repeats, synchronize=sync)))
            cost = outputs[-1].cost
            if cost is not None:
                costs.extend(float(c) for c in cost.double().cpu().reshape(-1))
    mean = statistics.fmean(per_clip)
    cost_mean = statistics.fmean(costs) if costs else None
    return {"clips": len(per_clip), "latency_ms_mean": mean * 1000.0, "latency_ms_median": statistics.median(per_clip) * 1000.0,
            "latency_ms_min": min(per_clip) * 1000.0, "latency_ms_max": max(per_clip) * 1000.0,
            "clips_per_s": 1.0 / mean, "gmacs_mean": cost_mean, "gmacs_min": min(costs) if costs else None,
            "gmacs_max": max(costs) if costs else None,
            "gmac_per_s": cost_mean / mean if cost_mean is not None else None,
            "repeats": repeats, "warmup": warmup}


def compare_on_clips(models: Mapping[str, nn.Module], clips: Sequence[Tensor], *, repeats: int = 3,
                     warmup: int = 2, device: torch.device | str = "cpu") -> dict[str, dict[str, Any]]:
    """Several (prepared) models timed on the same real clips, interleaved so that drift in the
    machine's speed falls on all of them alike.

    For every clip, each model in turn (the order rotates from clip to clip) runs ``repeats``
    timed forwards after the first clip's ``warmup`` untimed ones; a clip's time is the median.
    Per model: mean and median ms per clip, clips per second, and the mean, min and max cost per
    clip the model reported (``ModelOutput.cost``; ``None`` for a static model).
    """
    if repeats < 1 or not clips or not models:
        raise ValueError("compare_on_clips needs repeats >= 1, at least one clip and one model")
    device = torch.device(device)
    sync = synchronizer(device)
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    costs: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        first = clips[0].to(device)
        for name in names:
            timed_runs(lambda m=models[name]: model_output(m, first), warmup, synchronize=sync)
        for index, clip in enumerate(clips):
            clip = clip.to(device)
            for name in names[index % len(names):] + names[: index % len(names)]:
                outputs: list[Any] = []
                run = timed_runs(lambda m=models[name], c=clip, o=outputs: o.append(model_output(m, c)), repeats,
                                 synchronize=sync)
                times[name].append(statistics.median(run))
                if outputs[-1].cost is not None:
                    costs[name].extend(float(c) for c in outputs[-1].cost.double().cpu().reshape(-1))
    rows = {}
    for name in names:
        mean = statistics.fmean(times[name])
        cost = costs[name]
        rows[name] = {"clips": len(clips), "latency_ms_mean": mean * 1000.0,
                      "latency_ms_median": statistics.median(times[name]) * 1000.0, "clips_per_s": 1.0 / mean,
                      "gmacs_mean": statistics.fmean(cost) if cost else None, "gmacs_min": min(cost) if cost else None,
                      "gmacs_max": max(cost) if cost else None, "repeats": repeats, "warmup": warmup}
    return rows


def random_input_saving(base: nn.Module, dynamic: nn.Module, inputs: Sequence[Tensor], *, base_gmacs: float,
                        repeats: int, threads: int) -> dict[str, float | None]:
    """A dynamic model against its static ``base`` on ``inputs`` (random clips, e.g. at a paper's
    scale), both prepared for inference and timed interleaved at batch 1 with ``threads`` torch
    threads (:func:`compare_on_clips`): their mean ms, the GMACs the dynamic model reported
    against ``base_gmacs``, the GMACs and time savings and their ratio (:func:`saving_ratio`)."""
    with torch_threads(threads):
        rows = compare_on_clips({"base": prepare_for_inference(base), "dynamic": prepare_for_inference(dynamic)},
                                inputs, repeats=repeats, warmup=1)
    b, d = rows["base"], rows["dynamic"]
    return {"base_gmacs": base_gmacs, "dynamic_gmacs": d["gmacs_mean"], "gmacs_saving": 1 - d["gmacs_mean"] / base_gmacs,
            "base_latency_ms": b["latency_ms_mean"], "dynamic_latency_ms": d["latency_ms_mean"],
            "latency_saving": 1 - d["latency_ms_mean"] / b["latency_ms_mean"],
            "latency_saving_per_gmacs_saving": saving_ratio(latency=d["latency_ms_mean"],
                                                            base_latency=b["latency_ms_mean"],
                                                            gmacs=d["gmacs_mean"], base_gmacs=base_gmacs)}


def saving_ratio(*, latency: float, base_latency: float, gmacs: float, base_gmacs: float) -> float | None:
    """Wall-clock saving over GMACs saving, ``(1 - latency/base) / (1 - gmacs/base)``: 1 when the
    time falls as much as the MACs; ``None`` when no MACs were saved (a saving below 1e-12 of
    the base is float rounding of a difference of sums, not a MAC)."""
    gmacs_saving = 1.0 - gmacs / base_gmacs
    if gmacs_saving <= 1e-12:
        return None
    return (1.0 - latency / base_latency) / gmacs_saving


# ---------------------------------------------------------------------------------------------
# Time per layer


def leaf_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``model`` that cost and time are split over, by dotted name: its leaf conv
    and linear modules, and every module that sets ``cost_layer = True`` (a method's dynamic
    layer or block, which runs its convolutions itself with weights it slices or folds: its
    gate, policy or rebuild count as part of it). A layer never lies inside another."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():  # parents before their children
        if not name or any(name.startswith(f"{outer}.") for outer in layers):
            continue
        leaf = isinstance(module, LEAF_LAYER_TYPES) and not any(True for _ in module.children())
        if leaf or getattr(module, "cost_layer", False):
            layers[name] = module
    return layers


@dataclass
class LayerTimes:
    """Forward time split over :func:`leaf_layers`: ``layers`` seconds per module (all calls, all runs),
    ``total`` seconds of the whole forwards, ``runs`` forwards timed."""

    layers: dict[str, float]
    total: float
    runs: int
    calls: dict[str, int] = field(default_factory=dict)


def time_layers(model: nn.Module, inputs: Sequence[Tensor], *, forward: Callable[[Tensor], Any] | None = None,
                repeats: int = 1, warmup: int = 1, device: torch.device | str = "cpu") -> LayerTimes:
    """Seconds spent in each layer of ``model`` (:func:`leaf_layers`) and in its whole forward.

    Every input runs ``repeats`` times (after ``warmup`` untimed runs of the first) through
    ``forward`` (default ``model``); forward pre/post hooks read :func:`time.perf_counter` around
    each layer's call (synchronising CUDA first on a CUDA device). The layer times are parts
    of ``total``; what they leave (BatchNorm, activations, pooling, Python) is ``total - sum``.
    """
    if repeats < 1 or not inputs:
        raise ValueError("time_layers needs repeats >= 1 and at least one input")
    device = torch.device(device)
    sync = synchronizer(device)
    run = forward or model
    layers = leaf_layers(model)
    spent = dict.fromkeys(layers, 0.0)
    calls = dict.fromkeys(layers, 0)
    started: dict[str, float] = {}
    recording = [False]

    def pre(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            if recording[0]:
                if sync is not None:
                    sync()
                started[name] = time.perf_counter()
        return hook

    def post(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if recording[0] and name in started:
                if sync is not None:
                    sync()
                spent[name] += time.perf_counter() - started.pop(name)
                calls[name] += 1
        return hook

    handles = []
    try:
        for name, module in layers.items():
            handles.append(module.register_forward_pre_hook(pre(name)))
            handles.append(module.register_forward_hook(post(name)))
        total = 0.0
        with torch.no_grad():
            first = inputs[0].to(device)
            timed_runs(lambda: run(first), warmup, synchronize=sync)
            recording[0] = True
            for x in inputs:
                x = x.to(device)
                total += sum(timed_runs(lambda x=x: run(x), repeats, synchronize=sync))
    finally:
        for handle in handles:
            handle.remove()
    return LayerTimes(layers=spent, total=total, runs=repeats * len(inputs), calls=calls)


def executed_layer_gmacs(model: nn.Module, inputs: Sequence[Tensor], *,
                         forward: Callable[[Tensor], Any] | None = None,
                         device: torch.device | str = "cpu") -> tuple[dict[str, float], float]:
    """Mean GMACs per input that each layer (:func:`leaf_layers`) executed, and the mean total.

    Counted with :class:`~torch.utils.flop_counter.FlopCounterMode` on real forwards (the
    convention of :mod:`effvid.cost.executed`), for models whose work depends on the input.
    """
    run = forward or model
    names = set(leaf_layers(model))
    per_layer: dict[str, float] = dict.fromkeys(names, 0.0)
    total = 0.0
    with torch.no_grad():
        for x in inputs:
            with FlopCounterMode(display=False, depth=None, custom_mapping=EXECUTED_FORMULAS) as counter:
                run(x.to(device))
            for key, ops in counter.get_flop_counts().items():
                name = key.partition(".")[2]
                if name in names:
                    per_layer[name] += sum(ops.values()) / 2 / 1e9
            total += counter.get_total_flops() / 2 / 1e9
    count = len(inputs)
    return {name: value / count for name, value in per_layer.items()}, total / count


def static_layer_gmacs(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """GMACs per module from the static counter's per-layer rows (``CostReport.layers``), summed over ops."""
    out: dict[str, float] = {}
    for row in rows:
        out[row["module"]] = out.get(row["module"], 0.0) + float(row["gmacs"])
    return out


def layer_table(times: LayerTimes, gmacs: Mapping[str, float], total_gmacs: float,
                types: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per layer with its GMACs and time and their shares, plus :data:`OTHER_OPS`
    (the GMACs and time no layer accounts for), sorted by time, longest first.

    Both share columns sum to 1: the GMACs over ``total_gmacs``, the times over ``times.total``.
    Times are in ms per forward (the sums over all timed runs divided by ``times.runs``).
    """
    per_run = 1000.0 / times.runs
    rows = []
    for name, seconds in times.layers.items():
        rows.append({"module": name, "type": (types or {}).get(name, ""), "gmacs": float(gmacs.get(name, 0.0)),
                     "time_ms": seconds * per_run})
    layer_gmacs = sum(row["gmacs"] for row in rows)
    layer_ms = sum(row["time_ms"] for row in rows)
    total_ms = times.total * per_run
    rows.append({"module": OTHER_OPS, "type": "", "gmacs": max(total_gmacs - layer_gmacs, 0.0),
                 "time_ms": max(total_ms - layer_ms, 0.0)})
    gmac_sum = sum(row["gmacs"] for row in rows)
    ms_sum = sum(row["time_ms"] for row in rows)
    for row in rows:
        row["gmacs_share"] = row["gmacs"] / gmac_sum if gmac_sum > 0 else 0.0
        row["time_share"] = row["time_ms"] / ms_sum if ms_sum > 0 else 0.0
    rows.sort(key=lambda row: row["time_ms"], reverse=True)
    return rows
