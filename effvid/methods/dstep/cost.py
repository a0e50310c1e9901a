"""D-STEP's cost (Eq. 2), per block and frame, from the decisions; in MACs (GMACs at the model).

A block's convolutions are :class:`ConvTerm` s: each runs at the block output's resolution
(``out``) or, for the Bottleneck's first 1x1 convolution, at its input's (``mid``), and counts
the channels that are *needed* (computed now or reused by the next frame: the first
convolution's outputs), *non-skipped* (the second convolution's inputs) or *all* of them. Per
frame, a term costs ``positions * channels * macs``:

* Eq. (2), the paper's (differentiable, :func:`eq2_macs`): ``positions`` = the mask's active
  tiles times the tile's pixels (straight-through, so the sparsity loss reaches the mask),
  ``channels`` the straight-through one-hots summed over channels (their gradient reaches the
  policy; no floor division). The last frame has no next frame, so it computes only the
  channels it keeps; the first frame may not reuse.
* Executed (:func:`executed_macs`): what the inference path runs, the same count with the
  hard decisions, except that a frame whose block runs densely (:func:`~effvid.methods.dstep.
  sparse.runs_dense`) executes every position of its maps.

Both add the block's static work per frame: the projection shortcut, the mask's 3x3 convolution
on its grid and the policy's two linear layers. Nothing depends on a batch size or a clip
length: every tensor is per frame, ``(B*T,)``, and the model sums each clip's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from effvid.methods.dstep.policy import next_frame
from effvid.methods.dstep.settings import COMPUTE, REUSE, SKIP
from effvid.methods.dstep.sparse import runs_dense


@dataclass(frozen=True)
class ConvTerm:
    """One masked convolution of a block (module docstring): ``macs`` per position per counted channel."""

    where: Literal["mid", "out"]
    channels: Literal["need", "nonskip", "all"]
    macs: int


def conv_macs(conv: nn.Conv2d, out_size: tuple[int, int]) -> int:
    """MACs of ``conv`` for one frame producing an ``out_size`` map."""
    kh, kw = conv.kernel_size
    return out_size[0] * out_size[1] * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


def channel_counts(onehot: Tensor, num_frames: int) -> dict[str, Tensor]:
    """Per frame ``(N,)``: the needed and the non-skipped channels of decisions ``(N, C, 3)``
    (straight-through values when ``onehot`` carries gradients), and ``all = 1``."""
    compute, reuse, skip = onehot[..., COMPUTE], onehot[..., REUSE], onehot[..., SKIP]
    need = 1.0 - (1.0 - compute) * (1.0 - next_frame(reuse, num_frames))
    return {"need": need.sum(dim=1), "nonskip": (1.0 - skip).sum(dim=1), "all": torch.ones_like(skip[:, 0])}


def terms_macs(terms: Sequence[ConvTerm], positions: dict[str, Tensor], counts: dict[str, Tensor]) -> Tensor:
    """``sum(positions[where] * counts[channels] * macs)`` over ``terms``, per frame."""
    total = torch.zeros_like(positions["out"])
    for term in terms:
        total = total + positions[term.where] * counts[term.channels].to(total.dtype) * term.macs
    return total


def eq2_macs(terms: Sequence[ConvTerm], mask: Tensor, onehot: Tensor, *, tile_pixels: dict[str, int],
             num_frames: int, static: int) -> Tensor:
    """Eq. (2) per frame ``(N,)``, differentiable in ``mask (N, rows, cols)`` and ``onehot``."""
    active = mask.flatten(1).sum(dim=1)
    positions = {where: active * pixels for where, pixels in tile_pixels.items()}
    return terms_macs(terms, positions, channel_counts(onehot, num_frames)) + static


def executed_macs(terms: Sequence[ConvTerm], mask: Tensor, onehot: Tensor, *, tile_pixels: dict[str, int],
                  map_pixels: dict[str, int], dense_above: float, num_frames: int, static: int) -> Tensor:
    """What the inference path executes per frame ``(N,)``, float64 (module docstring)."""
    active = mask.detach().flatten(1).sum(dim=1).to(torch.float64)
    dense = runs_dense(active, mask[0].numel(), dense_above)
    positions = {where: torch.where(dense, float(map_pixels[where]), active * pixels)
                 for where, pixels in tile_pixels.items()}
    counts = {k: v.to(torch.float64) for k, v in channel_counts(onehot.detach().to(torch.float64), num_frames).items()}
    return terms_macs(terms, positions, counts) + static
