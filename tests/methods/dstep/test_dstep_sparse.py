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


def _selection(frames: int, channels: int, chosen: list[list[int]]) -> torch.Tensor:
    select = torch.zeros(frames, channels, dtype=torch.bool)
    for n, picked in enumerate(chosen):
        select[n, picked] = True
    return select


@pytest.mark.parametrize("dense_above", [1.0, 0.0])  # frames on gathered tiles, or every frame dense
def test_per_frame_output_channels_compute_only_those_channels(dense_above):
    x, weight, mask = _case(16, 1, 4, channels=4)
    mask[0, 1, :2] = True
    plan = TilePlan.from_mask(mask.double(), dense_above=dense_above)
    outputs = _selection(3, 7, [[0, 3, 5], [0, 1, 2, 3, 4, 5, 6], [0, 5]])  # 0 and 5 shared by every frame
    with FlopCounterMode(display=False) as counter:
        tiles, dense = conv_frames(plan, x, weight, None, tile=4, stride=1, padding=1, outputs=outputs)
    out = assemble(plan, tiles, dense, channels=7, size=(16, 16), pixels=tiles_to_pixels(mask.double(), 4, 16, 16))
    positions = (mask.flatten(1).sum(dim=1) * 16 if dense_above == 1.0 else torch.full((3,), 256)).tolist()
    assert counter.get_total_flops() // 2 == sum(p * int(o.sum()) * 4 * 9 for p, o in zip(positions, outputs))
    expected = masked_conv2d(x, weight, mask, tile=4, stride=1, padding=1)
    assert torch.allclose(out[outputs], expected[outputs], rtol=0, atol=1e-12)
    assert torch.equal(out[~outputs], torch.zeros_like(out[~outputs]))


@pytest.mark.parametrize("dense_above", [1.0, 0.0])
@pytest.mark.parametrize("chosen", [[[1, 2], [0, 1, 2, 3], []],  # frame 2 reads nothing: its output is the bias
                                    [[1, 2], [0, 1, 2, 3], [1, 2, 3]]])  # 1 and 2 read by every frame
def test_per_frame_input_channels_read_only_those_channels(dense_above, chosen):
    x, weight, mask = _case(16, 1, 4, channels=4)
    mask[0, 1, :2] = True
    plan = TilePlan.from_mask(mask.double(), dense_above=dense_above)
    inputs = _selection(3, 4, chosen)
    bias = torch.randn(7, dtype=x.dtype)
    kept = x * inputs[:, :, None, None]  # skipped input channels are zero
    with FlopCounterMode(display=False) as counter:
        tiles, dense = conv_frames(plan, kept, weight, bias, tile=4, stride=1, padding=1, inputs=inputs)
    out = assemble(plan, tiles, dense, channels=7, size=(16, 16), pixels=tiles_to_pixels(mask.double(), 4, 16, 16))
    positions = (mask.flatten(1).sum(dim=1) * 16 if dense_above == 1.0 else torch.full((3,), 256)).tolist()
    assert counter.get_total_flops() // 2 == sum(p * int(i.sum()) * 7 * 9 for p, i in zip(positions, inputs))
    pixels = tiles_to_pixels(mask.double(), 4, 16, 16)
    expected = (torch.nn.functional.conv2d(kept, weight, bias, padding=1)) * pixels
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not both"):
        conv_frames(plan, kept, weight, bias, tile=4, stride=1, padding=1, inputs=inputs, outputs=inputs)
