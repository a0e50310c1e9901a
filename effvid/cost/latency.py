"""Measured CPU latency of a network at batch 1 (the Table-1 column the paper's FLOPs stand in for)."""

from __future__ import annotations

import statistics
import time

import torch

from effvid.spec import ArchSpec


def cpu_latency_ms(spec: ArchSpec, *, repeats: int = 10, warmup: int = 2, threads: int = 1) -> float:
    """Median wall time in milliseconds of one batch-1 forward of ``spec``'s network on the CPU.

    The network is built from the spec (weights do not change the work of a dense network) and
    run in eval mode without gradients, with ``threads`` torch threads, ``warmup`` untimed runs
    first and the median of ``repeats`` timed runs returned.
    """
    from effvid.cost.static import spec_input_shape
    from effvid.models import create_from_spec

    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = create_from_spec(spec).eval()
        clip = torch.randn(spec_input_shape(spec))
        times = []
        with torch.no_grad():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(clip)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times) * 1000.0
