"""Training clips in pairs: a model's clip, and the same region of the same frames at a second
geometry (a distillation teacher's own crop size, mean and std).

:class:`PairedTrainTransform` draws one random training geometry, exactly as
:class:`~effvid.data.transforms.TrainTransform` of the first spec does (same generator draws in
the same order, so the first clip is bit for bit that transform's), and cuts both clips with it:

* the first spec's clip: short side resized to the drawn size ``S``, the drawn box cropped (a
  ``crop_size`` square, or TSN's multi-scale box resized to the square), maybe flipped;
* the second spec's clip: everything scaled by ``k = second crop / first crop``: short side
  ``round(S * k)``, box sides ``round(side * k)`` (a plain crop's box is then exactly the
  second crop square), the box at the same relative place within the room the frame leaves
  around it, resized to the second spec's crop square, flipped alike, normalised with the
  second spec's mean and std.

So the second clip shows the first clip's region at the second crop size. The second spec's own
resize settings are not used: the scale follows from the region. For specs whose resize range
scales with the crop (PAS's spatial reduction), ``round(S * k)`` is a draw of the second
spec's own scale jitter, give or take a pixel of rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from effvid.data.transforms import (
    as_clip_tensor,
    crop,
    flip,
    multiscale_crop_box,
    normalize,
    resize,
    short_side_size,
)
from effvid.spec import ArchSpec


@dataclass(frozen=True)
class CropBox:
    """One training geometry: frames resized so the short side is ``short`` (``height x width``),
    the ``box_height x box_width`` window at ``(top, left)`` cut out, mirrored when ``flipped``."""

    short: int
    height: int
    width: int
    top: int
    left: int
    box_height: int
    box_width: int
    flipped: bool

    def scaled(self, factor: float, frame_height: int, frame_width: int) -> CropBox:
        """The same region of a ``frame_height x frame_width`` frame with every length times ``factor``."""
        short = round(self.short * factor)
        height, width = short_side_size(frame_height, frame_width, short)
        box_height = min(height, round(self.box_height * factor))
        box_width = min(width, round(self.box_width * factor))
        return CropBox(short, height, width,
                       _same_place(self.top, self.height - self.box_height, height - box_height),
                       _same_place(self.left, self.width - self.box_width, width - box_width),
                       box_height, box_width, self.flipped)


def _same_place(offset: int, room: int, new_room: int) -> int:
    """The offset at the same fraction of ``new_room`` as ``offset`` is of ``room`` (centred when
    the old box filled its frame)."""
    return round(offset * new_room / room) if room else new_room // 2


@dataclass(frozen=True)
class PairedTrainTransform:
    """``(first clip, second clip)`` of frames under one random training geometry (module docstring).

    ``flip`` and ``multiscale`` mean what they mean for :func:`~effvid.data.transforms.train_transform`
    of ``first``; its geometry checks apply to ``first`` and carry over to ``second`` by scaling.
    """

    first: ArchSpec
    second: ArchSpec
    flip: bool = False
    multiscale: bool = False

    def __call__(self, first_frames: np.ndarray | torch.Tensor, second_frames: np.ndarray | torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both normalised ``(C, T, H, W)`` clips; the frames are ``(T, H, W, 3)`` uint8 of one video."""
        first = as_clip_tensor(first_frames)
        second = as_clip_tensor(second_frames)
        box = self.draw(first.shape[-2], first.shape[-1], generator)
        factor = self.second.crop_size / self.first.crop_size
        return (cut(first, box, self.first),
                cut(second, box.scaled(factor, second.shape[-2], second.shape[-1]), self.second))

    def draw(self, frame_height: int, frame_width: int, generator: torch.Generator | None) -> CropBox:
        """The geometry :class:`~effvid.data.transforms.TrainTransform` of ``first`` would draw
        from ``generator`` for frames of this size."""
        size = self.first.crop_size
        if self.multiscale:
            short = self.first.test_short_side
            height, width = short_side_size(frame_height, frame_width, short)
            top, left, box_height, box_width = multiscale_crop_box(height, width, size, generator)
        else:
            low, high = self.first.train_resize_range
            short = low + _randint(high - low + 1, generator)
            height, width = short_side_size(frame_height, frame_width, short)
            top = _randint(height - size + 1, generator)
            left = _randint(width - size + 1, generator)
            box_height = box_width = size
        flipped = self.flip and bool(_randint(2, generator))
        return CropBox(short, height, width, top, left, box_height, box_width, flipped)


def cut(clip: torch.Tensor, box: CropBox, spec: ArchSpec) -> torch.Tensor:
    """The ``(T, 3, H, W)`` uint8 clip cut by ``box`` into ``spec``'s normalised crop square."""
    window = crop(resize(clip, box.height, box.width), box.top, box.left, box.box_height, box.box_width)
    window = resize(window, spec.crop_size, spec.crop_size)
    return normalize(flip(window) if box.flipped else window, spec.mean, spec.std)


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[0, high)``, drawn as the training transform draws it."""
    return int(torch.randint(high, (1,), generator=generator).item())
