"""D-STEP's dense cost is priced at the spec's test crop, the input its views are evaluated on."""

from __future__ import annotations

import pytest
from dstep_helpers import dstep_spec

from effvid.models import create_from_spec


def test_dense_cost_is_at_the_test_crop_not_the_training_crop():
    spec = dstep_spec("tsm_r18")  # 4 frames, 32 px crops
    model = create_from_spec(spec.replace(test_crop_size=48, test_resize=56))
    assert model.dense_gmacs() == pytest.approx(4 * model.frame_macs((48, 48))[0] / 1e9, rel=1e-12)
    assert model.dense_gmacs() > create_from_spec(spec).dense_gmacs()
