"""Training clips in pairs: a model's clip, and the same region of the same frames at a second
geometry (a distillation teacher's own crop size, mean and std).

:class:`PairedTrainTransform` draws one random training geometry with
:func:`~effvid.data.transforms.draw_box`, as :class:`~effvid.data.transforms.TrainTransform` of
the first spec does (so the first clip is bit for bit that transform's), and cuts both clips
with it (:func:`~effvid.data.transforms.cut`, :meth:`~effvid.data.transforms.CropBox.scaled`):

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

from effvid.data.transforms import as_clip_tensor, cut, draw_box
from effvid.spec import ArchSpec


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
        box = draw_box(self.first, first.shape[-2], first.shape[-1], generator, flip=self.flip,
                       multiscale=self.multiscale)
        factor = self.second.crop_size / self.first.crop_size
        return (cut(first, box, self.first),
                cut(second, box.scaled(factor, second.shape[-2], second.shape[-1]), self.second))
