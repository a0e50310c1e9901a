"""Tile-sparse convolution: run a convolution only on the active tiles of its output.

SBNet's recipe in plain PyTorch: every active output tile's input window (the tile plus its
halo, ``(tile - 1) * stride + kernel`` pixels a side) is gathered from the zero-padded input
into one batch of patches (a zero-copy ``unfold`` view, then one index), a single dense
``conv2d`` without padding turns each patch into exactly its ``tile x tile`` output, and the
results are scattered back into a zero map. Each active output pixel sees exactly the input
the dense convolution would have given it, so the active tiles equal the dense convolution's
(up to float summation order) and inactive tiles are zero; only ``active tiles * tile^2``
output positions are executed. Partial tiles at the border are computed whole on the zero
padding and cropped, so a tile always costs ``tile^2`` positions.

:func:`runs_dense` is the fallback rule: a frame with more than ``dense_above`` of its tiles
active runs the plain dense convolution (every position) and is masked afterwards.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """The ``(rows, cols)`` of ``tile x tile`` tiles covering a ``height x width`` map."""
    return math.ceil(height / tile), math.ceil(width / tile)


def tiles_to_pixels(mask: Tensor, tile: int, height: int, width: int) -> Tensor:
    """A tile mask ``(N, rows, cols)`` as a pixel mask ``(N, 1, height, width)`` (nearest, cropped)."""
    pixels = mask.repeat_interleave(tile, dim=1).repeat_interleave(tile, dim=2)
    return pixels[:, :height, :width].unsqueeze(1)


def active_tiles(mask: Tensor) -> Tensor:
    """The ``(A, 2)`` row/column indices of the non-zero tiles of one frame's mask ``(rows, cols)``."""
    return mask.nonzero()


def runs_dense(active: int, total: int, dense_above: float) -> bool:
    """Whether a frame with ``active`` of ``total`` tiles active runs densely (module docstring)."""
    return active > dense_above * total


def gather_tiles(x: Tensor, tiles: Tensor, *, grid: tuple[int, int], tile: int, kernel: int, stride: int,
                 padding: int) -> Tensor:
    """The input windows ``(A, C, win, win)`` of output tiles ``tiles (A, 2)`` of a convolution.

    ``x (C, H, W)`` is one frame's input; the convolution has a square ``kernel``, ``stride``
    and zero ``padding``; its output is covered by ``grid`` tiles of side ``tile``. Each window
    is ``win = (tile - 1) * stride + kernel`` pixels wide, halo included.
    """
    rows, cols = grid
    win, step = (tile - 1) * stride + kernel, tile * stride
    need_h, need_w = (rows * tile - 1) * stride + kernel, (cols * tile - 1) * stride + kernel
    padded = F.pad(x, (padding, need_w - x.shape[-1] - padding, padding, need_h - x.shape[-2] - padding))
    windows = padded.unfold(1, win, step).unfold(2, win, step)  # (C, rows, cols, win, win), a view
    return windows.permute(1, 2, 0, 3, 4)[tiles[:, 0], tiles[:, 1]]


def scatter_tiles(values: Tensor, tiles: Tensor, *, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """A ``(C, H, W)`` map (``size``) holding ``values (A, C, tile, tile)`` at ``tiles``, zero elsewhere."""
    rows, cols = grid
    channels, tile = values.shape[1], values.shape[-1]
    out = values.new_zeros(rows, cols, channels, tile, tile)
    out[tiles[:, 0], tiles[:, 1]] = values
    full = out.permute(2, 0, 3, 1, 4).reshape(channels, rows * tile, cols * tile)
    return full[:, : size[0], : size[1]]


def tile_conv(x: Tensor, weight: Tensor, tiles: Tensor, *, grid: tuple[int, int], tile: int, stride: int,
              padding: int) -> Tensor:
    """The convolution's output on the tiles ``tiles`` only: ``(A, C_out, tile, tile)``.

    ``x (C, H, W)`` one frame, ``weight (C_out, C, k, k)``; one ``conv2d`` on the gathered
    patches, no bias.
    """
    patches = gather_tiles(x, tiles, grid=grid, tile=tile, kernel=weight.shape[-1], stride=stride, padding=padding)
    return F.conv2d(patches, weight, stride=stride)


def output_size(height: int, width: int, *, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """The output ``(H, W)`` of a square convolution on a ``height x width`` input."""
    return (height + 2 * padding - kernel) // stride + 1, (width + 2 * padding - kernel) // stride + 1


def sparse_conv2d(x: Tensor, weight: Tensor, mask: Tensor, *, tile: int, stride: int = 1, padding: int = 0,
                  dense_above: float = 1.0) -> Tensor:
    """``conv2d(x, weight)`` on the active tiles of ``mask (N, rows, cols)``, zero elsewhere.

    ``x (N, C, H, W)``; frames with no active tile execute nothing, frames with more than
    ``dense_above`` of their tiles active run the dense convolution and are masked.
    """
    height, width = output_size(x.shape[-2], x.shape[-1], kernel=weight.shape[-1], stride=stride, padding=padding)
    grid = tile_grid(height, width, tile)
    if tuple(mask.shape[1:]) != grid:
        raise ValueError(f"mask grid {tuple(mask.shape[1:])} does not cover a {height}x{width} output in "
                         f"tiles of {tile} (expected {grid})")
    out = x.new_zeros(x.shape[0], weight.shape[0], height, width)
    for n in range(x.shape[0]):
        tiles = active_tiles(mask[n])
        if len(tiles) == 0:
            continue
        if runs_dense(len(tiles), grid[0] * grid[1], dense_above):
            dense = F.conv2d(x[n : n + 1], weight, stride=stride, padding=padding)[0]
            out[n] = dense * tiles_to_pixels(mask[n : n + 1].to(x.dtype), tile, height, width)[0]
        else:
            values = tile_conv(x[n], weight, tiles, grid=grid, tile=tile, stride=stride, padding=padding)
            out[n] = scatter_tiles(values, tiles, grid=grid, size=(height, width))
    return out


def masked_conv2d(x: Tensor, weight: Tensor, mask: Tensor, *, tile: int, stride: int,
                      padding: int) -> Tensor:
    """What :func:`sparse_conv2d` computes, densely: the dense convolution times the pixel mask (the
    training path, and the reference the sparse one is tested against)."""
    dense = F.conv2d(x, weight, stride=stride, padding=padding)
    return dense * tiles_to_pixels(mask.to(x.dtype), tile, dense.shape[-2], dense.shape[-1])

