"""Tile-sparse convolution: run a convolution only on the active tiles of its output.

SBNet's recipe in plain PyTorch, for all frames of a batch at once. A :class:`TilePlan` reads
a tile mask ``(N, rows, cols)`` once: which frames run densely (:func:`runs_dense`), and the
``(A, 3)`` frame/row/column indices of the active tiles of the others, frame by frame. Every
active output tile's input window (the tile plus its halo, ``(tile - 1) * stride + kernel``
pixels a side) is gathered from the input into one batch of patches (one index for every
frame, positions in the zero padding zeroed: no padded copy of the map), a dense ``conv2d``
without padding turns each patch into exactly its ``tile x tile`` output, and one scatter puts
every frame's tiles straight into a zero map. Each active output pixel sees exactly the input
the dense convolution would have given it, so the active tiles equal the dense convolution's
(up to float summation order) and inactive tiles are zero; only ``active tiles * tile^2`` output positions are executed.
Partial tiles at the border are computed whole on the zero padding and cropped, so a tile
always costs ``tile^2`` positions.

:func:`runs_dense` is the fallback rule: a frame with more than ``dense_above`` of its tiles
active runs the plain dense convolution (every position) and is masked afterwards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """The ``(rows, cols)`` of ``tile x tile`` tiles covering a ``height x width`` map."""
    return math.ceil(height / tile), math.ceil(width / tile)


def tiles_to_pixels(mask: Tensor, tile: int, height: int, width: int) -> Tensor:
    """A tile mask ``(N, rows, cols)`` as a pixel mask ``(N, 1, height, width)`` (nearest, cropped)."""
    pixels = mask.repeat_interleave(tile, dim=1).repeat_interleave(tile, dim=2)
    return pixels[:, :height, :width].unsqueeze(1)


def runs_dense(active: Tensor, total: int, dense_above: float) -> Tensor:
    """Whether frames with ``active`` of ``total`` tiles active run densely (module docstring)."""
    return active > dense_above * total


def output_size(height: int, width: int, *, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """The output ``(H, W)`` of a square convolution on a ``height x width`` input."""
    return (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class TilePlan:
    """How a tile mask ``(N, rows, cols)`` executes: ``tiles (A, 3)`` (frame, row, column) of
    the active tiles of the frames on gathered tiles, frame by frame; ``spans`` ``(frame, start,
    stop)`` into ``tiles`` for each such frame with at least one active tile; ``dense`` the frames
    that run densely; ``every_tile`` whether every tile of every frame is active. Frames in
    neither list execute nothing."""

    frames: int
    grid: tuple[int, int]
    tiles: Tensor
    spans: tuple[tuple[int, int, int], ...]
    dense: tuple[int, ...]
    every_tile: bool

    @classmethod
    def from_mask(cls, mask: Tensor, dense_above: float) -> TilePlan:
        """The plan of ``mask`` (values 0 or 1) with the fallback fraction ``dense_above``."""
        active = mask.flatten(1).sum(dim=1)
        dense = runs_dense(active, mask[0].numel(), dense_above)
        tiles = (mask.bool() & ~dense[:, None, None]).nonzero()
        counts = torch.where(dense, 0, active.long()).tolist()
        spans, start = [], 0
        for frame, count in enumerate(counts):
            if count:
                spans.append((frame, start, start + count))
                start += count
        return cls(frames=mask.shape[0], grid=(mask.shape[1], mask.shape[2]), tiles=tiles, spans=tuple(spans),
                   dense=tuple(dense.nonzero()[:, 0].tolist()), every_tile=bool(mask.bool().all()))

    def gather(self, x: Tensor, *, tile: int, kernel: int, stride: int, padding: int) -> Tensor:
        """The input windows ``(A, C, win, win)`` of the planned tiles of a convolution on
        ``x (N, C, H, W)`` (square ``kernel``, ``stride``, zero ``padding``) whose output is
        covered by the plan's grid of tiles of side ``tile``; ``win = (tile - 1) * stride + kernel``.

        Reads only the windows: each tile's rows and columns index ``x`` directly (clamped to the
        map), and the positions that fall outside it (the zero padding) are zeroed, so no padded
        copy of the whole map is made. A channels-last ``x`` gives channels-last windows."""
        rows, cols = self.grid
        height, width = x.shape[-2], x.shape[-1]
        row_index, row_valid = window_index(rows, tile, stride, kernel, padding, height, x.device)
        col_index, col_valid = window_index(cols, tile, stride, kernel, padding, width, x.device)
        r, c = self.tiles[:, 1], self.tiles[:, 2]
        frames = self.tiles[:, 0, None, None]
        windows = x[frames, :, row_index[r][:, :, None], col_index[c][:, None, :]]  # (A, win, win, C)
        if row_valid is not None or col_valid is not None:
            inside = ((row_valid[r][:, :, None] if row_valid is not None else True)
                      & (col_valid[c][:, None, :] if col_valid is not None else True))
            windows = windows * inside[..., None]
        return windows.permute(0, 3, 1, 2)

    def scatter(self, values: Tensor, size: tuple[int, int]) -> Tensor:
        """An ``(N, C, H, W)`` map (``size``) holding the planned tiles' ``values (A, C, tile,
        tile)``, zero elsewhere (the dense frames included), in the memory format of ``values``."""
        rows, cols = self.grid
        channels, tile = values.shape[1], values.shape[-1]
        index = self.tiles[:, 0], self.tiles[:, 1], self.tiles[:, 2]
        height, width = rows * tile, cols * tile
        if memory_format(values) == torch.channels_last:
            full = values.new_zeros(self.frames, height, width, channels)
            tiles = full.view(self.frames, rows, tile, cols, tile, channels).permute(0, 1, 3, 2, 4, 5)
            tiles[index] = values.permute(0, 2, 3, 1)
            return full[:, : size[0], : size[1]].permute(0, 3, 1, 2)
        full = values.new_zeros(self.frames, channels, height, width)
        tiles = full.view(self.frames, channels, rows, tile, cols, tile).permute(0, 2, 4, 1, 3, 5)
        tiles[index] = values
        return full[:, :, : size[0], : size[1]]


@functools.lru_cache(maxsize=256)
def window_index(tiles: int, tile: int, stride: int, kernel: int, padding: int, size: int,
                 device: torch.device) -> tuple[Tensor, Tensor | None]:
    """Along one axis of a map of ``size`` pixels: for each of ``tiles`` output tiles of side
    ``tile``, the input positions of its window (``(tiles, win)``, clamped into the map) and
    whether each lies inside the map (outside is the convolution's zero padding; ``None`` when
    every position does)."""
    win, step = (tile - 1) * stride + kernel, tile * stride
    positions = torch.arange(tiles, device=device)[:, None] * step - padding + torch.arange(win, device=device)
    inside = (positions >= 0) & (positions < size)
    return positions.clamp(0, size - 1), None if bool(inside.all()) else inside


def zeros(shape: Sequence[int], like: Tensor, layout: torch.memory_format) -> Tensor:
    """A zero tensor of ``shape`` with ``like``'s dtype and device, laid out as ``layout``."""
    return torch.empty(*shape, dtype=like.dtype, device=like.device, memory_format=layout).zero_()


def memory_format(x: Tensor) -> torch.memory_format:
    """``channels_last`` for a 4D tensor laid out that way (and not also contiguous), else
    ``contiguous_format``: the layout a block's maps keep through the sparse path."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _group_conv(x: Tensor, rows: Sequence[tuple[int, int, int]], weight: Tensor, bias: Tensor | None,
                select: Tensor | None, *, axis: Literal["out", "in"], share: bool, stride: int,
                padding: int) -> Tensor:
    """``conv2d(x, weight) + bias`` for a group of frames whose rows of ``x`` are ``rows``
    (``(frame, start, stop)``), each frame computing only its output channels (``axis="out"``;
    the others zero) or reading only its input channels (``axis="in"``) of ``select (N, C)``
    (bool; ``None``: every channel).

    With ``share``, the channels every frame of the group selects run as one convolution over
    the whole group (the weights sliced once, the frames batched), and each frame then runs its
    remaining channels alone; without it, each frame runs its channels alone. Either way a frame
    executes exactly its own channels."""
    if select is None:
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    chosen = select[[frame for frame, _, _ in rows]]
    shared = chosen.all(dim=0) if share else torch.zeros_like(chosen[0])
    common = shared.nonzero()[:, 0]
    size = output_size(x.shape[-2], x.shape[-1], kernel=weight.shape[-1], stride=stride, padding=padding)

    shape = (x.shape[0], weight.shape[0], *size)

    def outputs_of(index: Tensor) -> tuple[Tensor, Tensor | None]:
        return weight.index_select(0, index), None if bias is None else bias.index_select(0, index)

    if axis == "out":
        out = zeros(shape, x, memory_format(x))
        if len(common):
            out.index_copy_(1, common, F.conv2d(x, *outputs_of(common), stride=stride, padding=padding))
        for (_, start, stop), own in zip(rows, chosen):
            rest = (own & ~shared).nonzero()[:, 0]
            if len(rest):
                value = F.conv2d(x[start:stop], *outputs_of(rest), stride=stride, padding=padding)
                out[start:stop].index_copy_(1, rest, value)
        return out
    if len(common):
        out = F.conv2d(x.index_select(1, common), weight.index_select(1, common), bias, stride=stride,
                       padding=padding)
    else:
        out = zeros(shape, x, memory_format(x))
    for (_, start, stop), own in zip(rows, chosen):
        rest = (own & ~shared).nonzero()[:, 0]
        if len(rest):
            value = F.conv2d(x[start:stop].index_select(1, rest), weight.index_select(1, rest),
                             None if len(common) else bias, stride=stride, padding=padding)
            if len(common):
                out[start:stop] += value
            else:
                out[start:stop] = value
        elif not len(common) and bias is not None:  # a frame that reads nothing: its output is the bias
            out[start:stop] = bias[:, None, None]
    return out


def conv_frames(plan: TilePlan, x: Tensor, weight: Tensor, bias: Tensor | None, *, tile: int, stride: int,
                padding: int, outputs: Tensor | None = None,
                inputs: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """A convolution of ``x (N, C, H, W)`` executed as ``plan`` says: the planned tiles' outputs
    ``(A, C_out, tile, tile)`` (one gather for every frame) and the dense frames' full maps
    ``(D, C_out, H_out, W_out)``, unmasked (``None`` where the plan has none).

    Per frame ``n``, only the output channels ``outputs[n]`` are computed (``(N, C_out)`` bool;
    the others stay zero), or only the input channels ``inputs[n]`` are read (``(N, C_in)``; the
    others must be zero, as skipped channels are); ``None`` means every channel, and at most one
    of the two may be given. Frames on tiles convolve their own channels of their patches, one
    convolution per frame. Dense frames run the channels they all select as one batched
    convolution and then each its remaining ones (:func:`_group_conv` with ``share``): a frame's
    convolution alone is weight-bound there (at 14x14 and 7x7 one frame runs at 40-65% of a
    batched convolution's rate on this CPU), while a frame on tiles already convolves a batch of
    patches and a second convolution per frame cost more than it gained (measured at 8x224x224,
    ``benchmarks/dstep_synth.py``'s paper-scale figure).
    """
    if outputs is not None and inputs is not None:
        raise ValueError("conv_frames selects output or input channels per frame, not both")
    select, axis = (outputs, "out") if outputs is not None else (inputs, "in")
    kernel = weight.shape[-1]
    tiles = dense = None
    if plan.spans:
        patches = plan.gather(x, tile=tile, kernel=kernel, stride=stride, padding=padding)
        tiles = _group_conv(patches, plan.spans, weight, bias, select, axis=axis, share=False, stride=stride,
                            padding=0)
    if plan.dense:
        frames = list(plan.dense)
        rows = [(n, i, i + 1) for i, n in enumerate(frames)]
        inputs_dense = x if frames == list(range(plan.frames)) else x[frames]
        dense = _group_conv(inputs_dense, rows, weight, bias, select, axis=axis, share=True, stride=stride,
                            padding=padding)
    return tiles, dense


def assemble(plan: TilePlan, tiles: Tensor | None, dense: Tensor | None, *, channels: int, size: tuple[int, int],
             pixels: Tensor) -> Tensor:
    """The ``(N, channels, H, W)`` map (``size``) of :func:`conv_frames`'s outputs: the planned
    tiles scattered, the dense frames masked by their ``pixels (N, 1, H, W)``, zero elsewhere."""
    if dense is not None and len(plan.dense) == plan.frames:  # every frame ran densely, in order
        return dense if plan.every_tile else dense.mul_(pixels)
    if tiles is not None:
        out = plan.scatter(tiles, size)
    else:
        layout = memory_format(dense) if dense is not None else torch.contiguous_format
        out = zeros((plan.frames, channels, *size), pixels, layout)
    if dense is not None:
        frames = torch.tensor(plan.dense, device=out.device)
        out.index_copy_(0, frames, dense * pixels.index_select(0, frames))
    return out


def sparse_conv2d(x: Tensor, weight: Tensor, mask: Tensor, *, tile: int, stride: int = 1, padding: int = 0,
                  dense_above: float = 1.0) -> Tensor:
    """``conv2d(x, weight)`` on the active tiles of ``mask (N, rows, cols)``, zero elsewhere.

    ``x (N, C, H, W)``; frames with no active tile execute nothing, frames with more than
    ``dense_above`` of their tiles active run the dense convolution and are masked.
    """
    size = output_size(x.shape[-2], x.shape[-1], kernel=weight.shape[-1], stride=stride, padding=padding)
    grid = tile_grid(*size, tile)
    if tuple(mask.shape[1:]) != grid:
        raise ValueError(f"mask grid {tuple(mask.shape[1:])} does not cover a {size[0]}x{size[1]} output in "
                         f"tiles of {tile} (expected {grid})")
    mask = mask.to(x.dtype)
    plan = TilePlan.from_mask(mask, dense_above)
    tiles, dense = conv_frames(plan, x, weight, None, tile=tile, stride=stride, padding=padding)
    return assemble(plan, tiles, dense, channels=weight.shape[0], size=size, pixels=tiles_to_pixels(mask, tile, *size))


def masked_conv2d(x: Tensor, weight: Tensor, mask: Tensor, *, tile: int, stride: int,
                  padding: int) -> Tensor:
    """What :func:`sparse_conv2d` computes, densely: the dense convolution times the pixel mask (the
    training path, and the reference the sparse one is tested against)."""
    dense = F.conv2d(x, weight, stride=stride, padding=padding)
    return dense * tiles_to_pixels(mask.to(x.dtype), tile, dense.shape[-2], dense.shape[-1])
