"""compare_models refuses models that are tested at different crops, even at one training crop."""

from __future__ import annotations

import pytest

from effvid.engine.compare import compare_models
from effvid.errors import ConfigError
from effvid.models import create_from_spec


def test_another_test_crop_is_another_input_geometry(tmp_path, tiny_spec):
    spec = tiny_spec()
    model = create_from_spec(spec)
    wider = create_from_spec(spec.replace(test_crop_size=spec.crop_size + 8, test_resize=spec.test_short_side + 8))
    with pytest.raises(ConfigError, match="different inputs"):
        compare_models({"a": model, "b": wider}, tmp_path / "val.txt", baseline="a")
