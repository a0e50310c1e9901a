"""The temporal channel policy (section 3.1): skip, reuse or compute, per channel and frame.

The spatially masked block input of a frame and of the frame before it (zeros before the
first) are globally average-pooled and concatenated, a two-layer MLP (``FC -> BN -> ReLU ->
FC``, AdaFuse's ``PolicyBlock``) gives per channel the logits of the allowed actions, and a
straight-through Gumbel-softmax draws a one-hot decision in training (argmax at inference).
The first frame of a clip has nothing to reuse: its reuse logit is removed, so it chooses
between skip and compute. Decisions are ``(N, C, 3)`` one-hots in the fixed slots
``skip, reuse, compute`` (:mod:`~effvid.methods.dstep.settings`), whatever subset is allowed.
Its cost is the two linear layers: ``2 C_in * hidden + hidden * A * C`` MACs per frame.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from effvid.methods.common.gumbel import gumbel_softmax_st
from effvid.methods.dstep.mask import exactly_binary
from effvid.methods.dstep.settings import REUSE


def previous_frame(x: Tensor, num_frames: int) -> Tensor:
    """``x (B*T, ...)`` shifted one frame later within each clip: row ``t`` holds frame ``t - 1``
    (zeros for the first frame)."""
    clip = x.view(-1, num_frames, *x.shape[1:])
    return torch.cat([torch.zeros_like(clip[:, :1]), clip[:, :-1]], dim=1).view_as(x)


def next_frame(x: Tensor, num_frames: int) -> Tensor:
    """``x (B*T, ...)`` shifted one frame earlier within each clip: row ``t`` holds frame ``t + 1``
    (zeros for the last frame)."""
    clip = x.view(-1, num_frames, *x.shape[1:])
    return torch.cat([clip[:, 1:], torch.zeros_like(clip[:, :1])], dim=1).view_as(x)


def first_frames(rows: int, num_frames: int, device: torch.device) -> Tensor:
    """A ``(rows,)`` boolean that is true on the first frame of every clip."""
    return torch.arange(rows, device=device) % num_frames == 0


class ChannelPolicy(nn.Module):
    """The policy of one block: ``in_channels`` pooled input, decisions for ``channels`` channels.

    ``actions`` are the allowed slots (skip, reuse, compute or skip, compute); ``compute_bias``
    initialises the compute logit's bias (the others start at 0; weights N(0, 0.001) as AdaFuse).
    """

    def __init__(self, in_channels: int, channels: int, *, hidden: int, actions: tuple[int, ...], tau: float,
                 compute_bias: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.actions = actions
        self.tau = tau
        self.sample_at_test = False
        self.fc1 = nn.Linear(2 * in_channels, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, len(actions) * channels)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, 0.0, 0.001)
            nn.init.zeros_(fc.bias)
        with torch.no_grad():
            self.fc2.bias.view(channels, len(actions))[:, -1] = compute_bias

    def forward(self, pooled: Tensor, num_frames: int) -> Tensor:
        """One-hot decisions ``(N, C, 3)`` for pooled masked inputs ``(N, C_in)`` of ``N = B*T`` frames."""
        features = torch.cat([pooled, previous_frame(pooled, num_frames)], dim=1)
        logits = self.fc2(self.relu(self.bn(self.fc1(features)))).view(-1, self.channels, len(self.actions))
        if REUSE in self.actions:
            first = first_frames(logits.shape[0], num_frames, logits.device)
            reuse = torch.zeros_like(logits, dtype=torch.bool)
            reuse[first, :, self.actions.index(REUSE)] = True
            logits = logits.masked_fill(reuse, float("-inf"))
        choice = exactly_binary(gumbel_softmax_st(logits, self.tau, noise=self.training or self.sample_at_test))
        slots = [choice.new_zeros(choice.shape[:-1])] * 3
        for index, slot in enumerate(self.actions):
            slots[slot] = choice[..., index]
        return torch.stack(slots, dim=-1)

    def macs_per_frame(self) -> int:
        """MACs of one frame's decisions."""
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features
