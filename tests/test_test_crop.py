"""The test crop: a spec's test views and its cost use ``test_crop_size`` (SlowFast: train 224, test 256)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from effvid.cost.static import count_spec, spec_input_shape
from effvid.data import transforms as tf
from effvid.errors import ConfigError
from effvid.models import default_spec
from effvid.spec import ArchSpec


def test_test_crop_defaults_to_the_training_crop():
    spec = ArchSpec("x", crop_size=112)
    assert spec.test_crop_size is None and spec.test_crop == 112 and spec.test_short_side == 128
    wide = spec.replace(test_crop_size=140)
    assert wide.test_crop == 140 and wide.test_short_side == 160  # 8/7 of the test crop
    with pytest.raises(ConfigError, match="test_crop_size"):
        ArchSpec("x", test_crop_size=0)


def test_test_crop_survives_serialisation_and_old_sidecars_still_load():
    spec = ArchSpec("x", crop_size=224, test_crop_size=256, test_resize=256)
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = {key: value for key, value in ArchSpec("x", crop_size=96).to_dict().items() if key != "test_crop_size"}
    assert ArchSpec.from_dict(old).test_crop == 96


def test_test_views_use_the_test_crop_and_training_clips_the_training_crop():
    spec = ArchSpec("x", num_frames=2, crop_size=24, test_crop_size=32, train_resize=(28, 28), test_resize=36)
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    assert tf.test_transform(spec)(frames).shape == (3, 2, 32, 32)
    assert tf.test_transform(spec, num_crops=3)(frames, crop_index=2).shape == (3, 2, 32, 32)
    assert tf.train_transform(spec)(frames).shape == (3, 2, 24, 24)
    with pytest.raises(ConfigError, match="test_resize 30 is smaller than test_crop_size 32"):
        tf.test_transform(spec.replace(test_resize=30))


def test_slowfast_is_priced_at_its_256_test_crop():
    spec = default_spec("slowfast_4x16_r50")
    assert (spec.crop_size, spec.test_crop, spec.test_short_side) == (224, 256, 256)
    assert spec_input_shape(spec) == (1, 3, 32, 256, 256)
    assert count_spec(spec).gmacs == pytest.approx(36.10, rel=5e-3)  # flops.md: 32 x 256 x 256
    assert count_spec(spec.replace(test_crop_size=None)).gmacs == pytest.approx(27.64, rel=5e-3)  # at 224


def test_r2plus1d_trains_and_tests_at_112():
    spec = default_spec("r2plus1d_18")
    assert (spec.crop_size, spec.test_crop, spec.test_short_side) == (112, 112, 128)
