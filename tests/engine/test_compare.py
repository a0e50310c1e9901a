"""compare_models: the same evaluation and interleaved batch-1 timing for every model, one row each."""

from __future__ import annotations

import pytest

from effvid.engine.compare import compare_models
from effvid.engine.evaluate import evaluate
from effvid.errors import ConfigError
from effvid.models import create_from_spec


def test_rows_hold_each_models_evaluation_latency_and_saving_against_the_baseline(synth_micro, tiny_spec):
    val = synth_micro.annotations["val"]
    wide, narrow = create_from_spec(tiny_spec()), create_from_spec(tiny_spec().replace(width_mult=0.125))
    rows = compare_models({"wide": wide, "narrow": narrow}, val, baseline="wide", latency_clips=4, repeats=1)
    by_name = {row["model"]: row for row in rows}
    assert list(by_name) == ["wide", "narrow"] and by_name["wide"]["num_videos"] == 16
    assert by_name["narrow"]["gmacs_per_view"] < by_name["wide"]["gmacs_per_view"]
    assert all(row["latency_ms"] > 0 and row["latency_clips"] == 4 and row["latency_threads"] == 1 for row in rows)
    assert by_name["wide"]["latency_saving_per_gmacs_saving"] is None  # no MACs saved against itself
    assert isinstance(by_name["narrow"]["latency_saving_per_gmacs_saving"], float)


def test_an_evaluation_already_made_is_reused_and_only_timed(synth_micro, tiny_spec):
    val = synth_micro.annotations["val"]
    wide, narrow = create_from_spec(tiny_spec()), create_from_spec(tiny_spec().replace(width_mult=0.125))
    known = evaluate(wide, val, views=(1, 1), num_workers=1).to_dict()
    known["video_top1"] = 0.123  # a value no evaluation here gives: the row must carry it unchanged
    rows = compare_models({"wide": wide, "narrow": narrow}, val, baseline="wide", latency_clips=2, repeats=1,
                          evaluated={"wide": known})
    assert rows[0]["video_top1"] == 0.123 and rows[0]["latency_ms"] > 0
    with pytest.raises(ConfigError, match="views"):
        compare_models({"wide": wide}, val, baseline="wide", views=(2, 1), evaluated={"wide": known})


def test_a_missing_baseline_or_another_input_geometry_is_refused(synth_micro, tiny_spec):
    val = synth_micro.annotations["val"]
    model = create_from_spec(tiny_spec())
    with pytest.raises(ConfigError, match="baseline 'dense'"):
        compare_models({"a": model}, val, baseline="dense")
    other = create_from_spec(tiny_spec().replace(num_frames=2))
    with pytest.raises(ConfigError, match="different inputs"):
        compare_models({"a": model, "b": other}, val, baseline="a")


def test_executed_on_dataset_holds_a_dynamic_model_to_what_it_ran_on_every_view(synth_micro, tiny_spec, discoverable):
    from effvid.engine.compare import executed_on_dataset
    from effvid.spec import MethodSpec

    model = create_from_spec(tiny_spec().replace(method=MethodSpec("toy_skip", {"threshold": 0.0}))).eval()
    result = executed_on_dataset(model, synth_micro.annotations["val"], views=(2, 1), chunk=5)
    assert result["views"] == 32 and result["all_equal"] and result["max_abs_diff_gmacs"] < 1e-12
    assert len(result["reported_gmacs"]) == 32
    assert result["executed_gmacs_min"] <= result["executed_gmacs_mean"] <= result["executed_gmacs_max"]
    with pytest.raises(ConfigError, match="reports no per-sample cost"):
        executed_on_dataset(create_from_spec(tiny_spec()), synth_micro.annotations["val"])
