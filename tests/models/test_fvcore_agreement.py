"""fvcore, an independent counter (JIT trace of a real forward), agrees with ours on every model."""

from __future__ import annotations

import pytest
import torch

from effvid.cost.static import count_cost
from effvid.models import create, get_entry, list_models

fvcore_nn = pytest.importorskip("fvcore.nn")

CONV_LINEAR_MATMUL = {"conv", "linear", "addmm", "matmul", "bmm", "einsum", "mm"}


@pytest.mark.parametrize("name", list_models())
def test_fvcore_counts_the_same_conv_linear_matmul_macs(name):
    entry = get_entry(name)
    frames, crop = max(entry.min_frames, 2), entry.spatial_stride  # smallest valid input
    torch.manual_seed(0)
    model = create(name, num_classes=10, num_frames=frames, crop_size=crop, test_crop_size=crop).eval()
    analysis = fvcore_nn.FlopCountAnalysis(model, (torch.randn(1, 3, frames, crop, crop),))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_operator = analysis.by_operator()
    theirs = sum(count for op, count in by_operator.items() if op in CONV_LINEAR_MATMUL)
    assert by_operator["conv"] > 0
    assert count_cost(model).gmacs * 1e9 == pytest.approx(theirs, rel=0.01)
