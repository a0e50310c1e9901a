"""A module whose every multiply-accumulate is counted by hand, for the cost counters' tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvLinear(nn.Module):
    """One Conv3d, one BatchNorm3d and one Linear: every MAC can be counted by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4)))


# output (8 channels, 4 x 8 x 8), 3*27 MACs per output element; linear 8*5
CONV_MACS = 8 * 4 * 8 * 8 * 3 * 27
LINEAR_MACS = 8 * 5
BN_ELEMENTS = 8 * 4 * 8 * 8
PARAMS = (8 * 3 * 27 + 8) + 2 * 8 + (8 * 5 + 5)
