"""The spatial mask (section 3.1): which tiles of a block's output are computed, per frame.

Average pooling of the block input to the tile grid of the block output, a 3x3 convolution to
one map of logits, then a binary mask: in training a straight-through Gumbel-sigmoid sample
(hard in the forward pass, the relaxed sigmoid's gradient in the backward pass, DGNet's
``Mask_s``), at inference ``logit >= 0`` (the rounding of the sigmoid). Its cost is the 3x3
convolution on the grid: ``rows * cols * C_in * 9`` MACs per frame.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from effvid.methods.common.gumbel import gumbel_sigmoid_st
from effvid.methods.dstep.sparse import tile_grid


def exactly_binary(sample: Tensor) -> Tensor:
    """A straight-through sample whose forward values are exactly 0 or 1, gradient unchanged.

    ``hard + soft - soft.detach()`` rounds (``(1 + s) - s`` is not always 1 in floating point);
    adding ``sample - sample.detach()`` (exactly 0) to the rounded values keeps the gradient.
    """
    return sample.detach().round() + (sample - sample.detach())


class SpatialMask(nn.Module):
    """Tile mask of a block whose output has tiles of ``tile`` pixels (module docstring).

    ``bias`` initialises the convolution's bias (positive: tiles start on); ``tau`` is the
    Gumbel-sigmoid temperature; ``enabled=False`` makes every tile active and costs nothing.
    """

    def __init__(self, in_channels: int, tile: int, *, tau: float, bias: float, enabled: bool = True) -> None:
        super().__init__()
        self.tile = tile
        self.tau = tau
        self.enabled = enabled
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1, bias=True)
        nn.init.normal_(self.conv.weight, 0.0, 0.01)
        nn.init.constant_(self.conv.bias, bias)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The tile grid of a ``height x width`` block output."""
        return tile_grid(height, width, self.tile)

    def forward(self, x: Tensor, out_size: tuple[int, int]) -> Tensor:
        """The mask ``(N, rows, cols)`` (values 0 or 1) of block input ``x (N, C, H, W)``."""
        rows, cols = self.grid(*out_size)
        if not self.enabled:
            return x.new_ones(x.shape[0], rows, cols)
        logits = self.conv(F.adaptive_avg_pool2d(x, (rows, cols)))[:, 0]
        if self.training:
            return exactly_binary(gumbel_sigmoid_st(logits, self.tau))
        return (logits >= 0).to(logits.dtype)

    def macs_per_frame(self, out_size: tuple[int, int]) -> int:
        """MACs of one frame's mask at a block output of ``out_size``."""
        if not self.enabled:
            return 0
        rows, cols = self.grid(*out_size)
        return rows * cols * self.conv.in_channels * 9
