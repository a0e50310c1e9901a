"""Latency is measured on the prepared model, with the stated threads, and leaves torch as it was."""

from __future__ import annotations

import pytest
import torch

from effvid.cost.latency import cpu_latency_ms, timed_runs
from effvid.models import default_spec


def test_latency_is_a_median_in_ms_and_restores_the_thread_count():
    spec = default_spec("r2plus1d_18", num_classes=4, num_frames=4, crop_size=32, width_mult=0.25, depth_mult=0.5)
    before = torch.get_num_threads()
    for variant in ("eager", "channels_last"):
        latency = cpu_latency_ms(spec, repeats=3, warmup=1, threads=1, variant=variant)
        assert 0.0 < latency < 10_000.0
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="repeats"):
        cpu_latency_ms(spec, repeats=0)


def test_timed_runs_times_each_call():
    calls = []
    times = timed_runs(lambda: calls.append(1), 4)
    assert len(times) == 4 and len(calls) == 4 and all(t >= 0.0 for t in times)
