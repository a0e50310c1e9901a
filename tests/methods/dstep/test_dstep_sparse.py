"""The tile-sparse convolution equals the dense one on the active tiles and executes nothing else."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from effvid.methods.dstep.sparse import (
    TilePlan,
    assemble,
    conv_frames,
    masked_conv2d,
    sparse_conv2d,
    tile_grid,
    tiles_to_pixels,
)


def _case(size: int, stride: int, tile: int, channels: int = 5, frames: int = 3, dtype=torch.float64):
    x = torch.randn(frames, channels, size, size, dtype=dtype)
    weight = torch.randn(7, channels, 3, 3, dtype=dtype)
    out = (size + 2 - 3) // stride + 1
    mask = torch.rand(frames, *tile_grid(out, out, tile)) > 0.5
    mask[0] = False
    if frames > 1:
        mask[1, 0, 0] = True
    return x, weight, mask


@pytest.mark.parametrize(("size", "stride", "tile"), [(16, 1, 4), (16, 2, 4), (14, 1, 4), (13, 2, 2), (8, 2, 1)])
def test_active_tiles_equal_the_dense_convolution_with_halo_and_stride(size, stride, tile):
    x, weight, mask = _case(size, stride, tile)
    sparse = sparse_conv2d(x, weight, mask, tile=tile, stride=stride, padding=1)
    dense = torch.nn.functional.conv2d(x, weight, stride=stride, padding=1)
    pixels = tiles_to_pixels(mask, tile, *dense.shape[-2:]).expand_as(dense)
    assert sparse.shape == dense.shape
    assert (sparse[pixels] - dense[pixels]).abs().max() <= 1e-12  # float64: the same sums, rounding aside
    assert torch.equal(sparse[~pixels], torch.zeros_like(sparse[~pixels]))
    assert torch.allclose(sparse, masked_conv2d(x, weight, mask, tile=tile, stride=stride, padding=1), atol=1e-12)


def test_float32_tiles_match_dense_to_rounding():
    x, weight, mask = _case(16, 2, 4, dtype=torch.float32)
    sparse = sparse_conv2d(x, weight, mask, tile=4, stride=2, padding=1)
    assert torch.allclose(sparse, masked_conv2d(x, weight, mask, tile=4, stride=2, padding=1), atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_only_the_active_tiles_are_executed(stride):
    x, weight, mask = _case(16, stride, 2, dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        sparse_conv2d(x, weight, mask, tile=2, stride=stride, padding=1)
    assert counter.get_total_flops() // 2 == int(mask.sum()) * 2 * 2 * 5 * 7 * 9
    with FlopCounterMode(display=False) as counter:
        sparse_conv2d(x[:1], weight, mask[:1], tile=2, stride=stride, padding=1)
    assert counter.get_total_flops() == 0  # a frame with no active tile runs nothing


def test_a_nearly_full_frame_falls_back_to_the_dense_convolution():
    x, weight, mask = _case(16, 1, 4, frames=1, dtype=torch.float32)
    mask[:] = True
    mask[0, 0, 0] = False
    with FlopCounterMode(display=False) as counter:
        out = sparse_conv2d(x, weight, mask, tile=4, padding=1, dense_above=0.9)
    assert counter.get_total_flops() // 2 == 16 * 16 * 5 * 7 * 9
    assert torch.allclose(out, masked_conv2d(x, weight, mask, tile=4, stride=1, padding=1), atol=1e-5)


def test_a_tile_plan_lists_every_sparse_frames_tiles_once_and_the_dense_frames_apart():
    mask = torch.zeros(4, 2, 3)
    mask[0, 0, 1] = mask[0, 1, 2] = 1.0  # 2 of 6 tiles: gathered
    mask[2] = 1.0  # every tile: dense
    mask[3, 1, 0] = 1.0  # 1 tile: gathered; frame 1 has none and executes nothing
    plan = TilePlan.from_mask(mask, dense_above=0.5)
    assert plan.dense == (2,) and plan.spans == ((0, 0, 2), (3, 2, 3))
    assert plan.tiles.tolist() == [[0, 0, 1], [0, 1, 2], [3, 1, 0]]


def test_per_frame_channel_selections_compute_only_those_channels():
    x, weight, mask = _case(16, 1, 4, channels=4)
    mask[0, 1, :2] = True
    plan = TilePlan.from_mask(mask.double(), dense_above=1.0)
    outputs = [torch.tensor([0, 3]), None, torch.tensor([], dtype=torch.long)]
    inputs = [torch.tensor([1, 2]), torch.tensor([0]), None]
    with FlopCounterMode(display=False) as counter:
        tiles, dense = conv_frames(plan, x, weight, None, tile=4, stride=1, padding=1, outputs=outputs, inputs=inputs)
    out = assemble(plan, tiles, dense, channels=7, size=(16, 16), pixels=tiles_to_pixels(mask.double(), 4, 16, 16))
    active = mask.flatten(1).sum(dim=1).tolist()
    assert counter.get_total_flops() // 2 == 16 * 9 * (active[0] * 2 * 2 + active[1] * 7 * 1)
    for n, (outs, ins) in enumerate(zip(outputs, inputs)):
        kept = torch.zeros_like(x[n : n + 1])
        ins = torch.arange(4) if ins is None else ins
        kept[:, ins] = x[n : n + 1, ins]
        expected = masked_conv2d(kept, weight, mask[n : n + 1], tile=4, stride=1, padding=1)[0]
        chosen = torch.zeros(7, dtype=torch.bool)
        chosen[torch.arange(7) if outs is None else outs] = True
        assert torch.allclose(out[n, chosen], expected[chosen], rtol=0, atol=1e-12)
        assert torch.equal(out[n, ~chosen], torch.zeros_like(out[n, ~chosen]))
