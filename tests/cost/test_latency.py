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


def test_compare_on_clips_times_every_model_on_every_clip_and_reports_their_costs():
    from effvid.cost.latency import compare_on_clips, saving_ratio
    from effvid.models import ModelBase, ModelOutput

    class Counting(ModelBase):
        def __init__(self, cost):
            super().__init__()
            self.cost, self.calls = cost, 0

        def forward_output(self, x):
            self.calls += 1
            return ModelOutput(logits=x.mean(dim=(1, 2, 3, 4))[:, None],
                               cost=None if self.cost is None else torch.full((x.shape[0],), self.cost))

    models = {"dense": Counting(None), "dynamic": Counting(2.0)}
    clips = [torch.randn(1, 3, 2, 4, 4) for _ in range(3)]
    rows = compare_on_clips(models, clips, repeats=2, warmup=1)
    assert models["dense"].calls == models["dynamic"].calls == 1 + 3 * 2
    assert rows["dense"]["gmacs_mean"] is None and rows["dynamic"]["gmacs_mean"] == 2.0
    assert rows["dynamic"]["clips"] == 3 and rows["dynamic"]["latency_ms_mean"] > 0
    assert saving_ratio(latency=6.0, base_latency=10.0, gmacs=5.0, base_gmacs=10.0) == pytest.approx(0.8)
    assert saving_ratio(latency=6.0, base_latency=10.0, gmacs=10.0, base_gmacs=10.0) is None
    assert saving_ratio(latency=6.0, base_latency=10.0, gmacs=0.074799104, base_gmacs=0.07479910400000003) is None


def test_interleaved_runs_rotate_the_order_every_round():
    from effvid.cost.latency import interleaved_runs

    calls: list[str] = []
    times = interleaved_runs({name: (lambda n=name: calls.append(n)) for name in "abc"}, 3, warmup=1)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rounds 0-2
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    with pytest.raises(ValueError, match="repeats"):
        interleaved_runs({"a": lambda: None}, 0)
