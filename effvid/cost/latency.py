"""Measured latency: wall time of forwards run the way users run a model.

A model is timed after :func:`~effvid.models.inference.prepare_for_inference` (eval mode, no
gradients, the default inference variant: channels-last weights), with a stated number of torch
threads, as the median of repeated runs after untimed warm-up runs. Two CPU-heavy processes on
a small machine slow each other several times over, so figures are only meaningful on a quiet
machine, and savings are best measured as ratios within one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from effvid.cost.static import spec_input_shape
from effvid.models import create_from_spec, prepare_for_inference
from effvid.models.inference import DEFAULT_VARIANT, Variant
from effvid.spec import ArchSpec


def timed_runs(forward: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``forward`` (no warm-up, no gradient context change)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
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
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = prepare_for_inference(create_from_spec(spec), variant=variant)
        clip = torch.randn(spec_input_shape(spec))
        with torch.no_grad():
            timed_runs(lambda: model(clip), warmup)
            times = timed_runs(lambda: model(clip), repeats)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times) * 1000.0
