"""Mask and policy shapes, the Eq. (1) merge, sparse inference against the masked training
computation on hand-made decisions, and Eq. (2) against a hand count."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from effvid.methods.dstep.block import DStepBasicBlock, DStepBottleneck
from effvid.methods.dstep.cost import eq2_macs, executed_macs
from effvid.methods.dstep.mask import SpatialMask
from effvid.methods.dstep.policy import ChannelPolicy
from effvid.methods.dstep.settings import COMPUTE, REUSE, SKIP, DStepSettings
from effvid.models.layers import BasicBlock, Bottleneck

S, R, C = SKIP, REUSE, COMPUTE


def _onehot(actions: list[list[int]]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(actions), 3).to(torch.float64)


def _block(kind, in_channels: int, planes: int, stride: int, *, frames: int, tile: int = 2, dense_above: float = 1.0):
    block = (DStepBasicBlock if kind is BasicBlock else DStepBottleneck)(
        kind(in_channels, planes, stride=stride), settings=DStepSettings(hidden=8), tile=tile,
        dense_above=dense_above).double().eval()
    with torch.no_grad():
        for bn in (m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    block.num_segments = frames
    return block


def test_mask_is_a_binary_tile_grid_with_straight_through_gradients_and_rounds_at_inference():
    mask = SpatialMask(8, 4, tau=2 / 3, bias=0.0)
    x = torch.randn(6, 8, 32, 32, requires_grad=True)
    hard = mask.train()(x, (16, 16))
    assert hard.shape == (6, 4, 4) and set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    hard.sum().backward()
    assert mask.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        logits = mask.conv(torch.nn.functional.adaptive_avg_pool2d(x, (4, 4)))[:, 0]
        assert torch.equal(mask.eval()(x, (16, 16)), (logits >= 0).float())
    assert SpatialMask(8, 8, tau=1.0, bias=0.0).grid(56, 56) == (7, 7)  # 32 input pixels at 224
    assert SpatialMask(8, 1, tau=1.0, bias=0.0, enabled=False)(x, (7, 7)).eq(1).all()


@pytest.mark.parametrize("reuse", [True, False])
def test_policy_gives_one_hot_skip_reuse_compute_and_never_reuses_on_a_first_frame(reuse):
    actions = (S, R, C) if reuse else (S, C)
    policy = ChannelPolicy(8, 12, hidden=16, actions=actions, tau=0.67)
    torch.nn.init.normal_(policy.fc2.weight, 0.0, 1.0)
    for mode in (policy.train(), policy.eval()):
        onehot = mode(torch.randn(3 * 4, 8), 4)
        assert onehot.shape == (12, 12, 3) and torch.equal(onehot.sum(-1), torch.ones(12, 12))
        used = onehot.view(3, 4, 12, 3).sum(dim=(0, 2))
        assert used[0, R] == 0  # first frames choose between skip and compute
        assert (used[1:, R].sum() > 0) == reuse and used[:, S].sum() > 0 and used[:, C].sum() > 0


def test_eq1_merge_reuses_the_previous_frames_channel_skips_to_zero_and_masks():
    block = _block(BasicBlock, 3, 3, 1, frames=2)
    y = torch.arange(1, 2 * 3 * 2 * 2 + 1, dtype=torch.float64).view(2, 3, 2, 2)
    pixels = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    pixels[1, 0, 0, 0] = 0.0
    y = y * pixels
    merged = block.merge(y, _onehot([[C, S, C], [R, C, S]]), pixels)
    assert torch.equal(merged[0, 0], y[0, 0]) and torch.equal(merged[0, 1], torch.zeros(2, 2))
    assert torch.equal(merged[1, 0], y[0, 0] * pixels[1, 0])  # reused from frame 0, on frame 1's tiles
    assert torch.equal(merged[1, 1], y[1, 1]) and torch.equal(merged[1, 2], torch.zeros(2, 2))


DECISIONS = [[C, S, C, S], [R, R, C, S], [C, R, S, R], [S, C, R, C]]


@pytest.mark.parametrize(("kind", "stride", "in_channels", "planes"),
                         [(BasicBlock, 1, 4, 4), (BasicBlock, 2, 4, 4), (Bottleneck, 1, 16, 4), (Bottleneck, 2, 8, 4)])
@pytest.mark.parametrize("dense_above", [1.0, 0.5])
def test_sparse_inference_equals_the_masked_computation_for_the_same_decisions(kind, stride, in_channels, planes,
                                                                               dense_above):
    block = _block(kind, in_channels, planes, stride, frames=2, dense_above=dense_above)
    x = torch.randn(4, in_channels, 16, 16, dtype=torch.float64)
    out_size = block.out_size(16, 16)
    mask = (torch.rand(4, *block.mask.grid(*out_size)) > 0.4).to(torch.float64)
    mask[1] = 0.0
    mask[2] = 1.0
    onehot = _onehot(DECISIONS)
    with torch.no_grad():
        sparse = block.sparse(x, mask, onehot, out_size)
        masked = block.masked(x, mask, onehot, out_size)
    assert (sparse - masked).abs().max() <= 1e-10


@pytest.mark.parametrize("kind", [BasicBlock, Bottleneck])
def test_sparse_inference_without_reuse_equals_the_masked_computation(kind):
    block = _block(kind, 8, 4 if kind is Bottleneck else 8, 1, frames=4)
    x = torch.randn(4, 8, 8, 8, dtype=torch.float64)
    mask = (torch.rand(4, 4, 4) > 0.3).to(torch.float64)
    onehot = _onehot([[C, S, C, S] * (block.policy.channels // 4)] * 4)  # no frame reuses: the merge is the identity
    with torch.no_grad():
        assert (block.sparse(x, mask, onehot, (8, 8)) - block.masked(x, mask, onehot, (8, 8))).abs().max() <= 1e-10


def test_sparse_inference_follows_batchnorm_statistics_changed_in_place():
    block = _block(BasicBlock, 4, 4, 1, frames=4)
    x = torch.randn(4, 4, 16, 16, dtype=torch.float64)
    mask = torch.ones(4, 8, 8, dtype=torch.float64)
    onehot = _onehot(DECISIONS)
    with torch.no_grad():
        before = block.sparse(x, mask, onehot, (16, 16))
        block.bn2.running_mean.add_(1.0)  # what a training step or load_state_dict does: same tensor, new values
        after = block.sparse(x, mask, onehot, (16, 16))
        assert not torch.allclose(before, after)
        assert (after - block.masked(x, mask, onehot, (16, 16))).abs().max() <= 1e-10


def test_eq2_and_the_executed_count_match_a_hand_count():
    block = _block(BasicBlock, 4, 4, 1, frames=2)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    onehot = _onehot([[C, S, C, S], [R, R, C, S]])
    # frame 0: conv1 computes channels {0, 2} kept and {0, 1} reused next: 3 channels on 2 tiles of 2x2;
    # conv2 reads the 2 non-skipped channels. Frame 1 (the last): conv1 computes its kept channel only,
    # conv2 reads 3 channels on 3 tiles. Every frame adds its mask (2x2 grid, 4 channels, 3x3) and policy.
    conv = [8 * 3 * 4 * 9 + 8 * 2 * 4 * 9, 12 * 1 * 4 * 9 + 12 * 3 * 4 * 9]
    static = 2 * 2 * 4 * 9 + (2 * 4 * 8 + 8 * 3 * 4)
    kwargs = {"tile_pixels": block.tile_pixels(), "num_frames": 2, "static": static}
    expected = torch.tensor(conv, dtype=torch.float64) + static
    assert torch.equal(eq2_macs(block.terms, mask, onehot, **kwargs), expected)
    executed = executed_macs(block.terms, mask, onehot, map_pixels={"out": 16, "mid": 16}, dense_above=1.0, **kwargs)
    assert torch.equal(executed, expected)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        block.sparse(torch.randn(2, 4, 4, 4, dtype=torch.float64), mask, onehot, (4, 4))
    assert counter.get_total_flops() // 2 == sum(conv)


def test_eq2_gradients_reach_mask_and_policy():
    block = _block(BasicBlock, 4, 4, 1, frames=2)
    mask = torch.ones(2, 2, 2, dtype=torch.float64, requires_grad=True)
    onehot = _onehot([[C, S, C, S], [R, R, C, S]]).requires_grad_(True)
    cost = eq2_macs(block.terms, mask, onehot, tile_pixels=block.tile_pixels(), num_frames=2, static=0)
    cost.sum().backward()
    assert (mask.grad > 0).all()
    assert onehot.grad[1, 0, S] < 0 and onehot.grad[0, 1, R] == 0  # skipping saves; frame 0 cannot reuse anyway
