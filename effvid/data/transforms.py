"""Clip transforms: whole-clip, vectorised, uint8 until the final normalisation.

Every operation works on the clip as one ``(T, 3, H, W)`` uint8 tensor (frames as a batch), so a
resize or crop is one call for all frames and every frame of a clip gets the same geometry.
The composed transforms built by :func:`train_transform` and :func:`test_transform` take the
frames a reader returned (``(T, H, W, 3)`` uint8, numpy or torch), a ``torch.Generator`` for
their random draws (so results depend only on the generator, never on global state or on the
DataLoader worker), and a crop index (which of the test crops), and return a float clip
``(C, T, H, W)`` normalised with the spec's mean and std. (A model that wants lower
resolutions, as AR-Net's backbones do, makes them from this clip inside the model.)

Geometry rules:

* training: short side resized to a size drawn uniformly from ``spec.train_resize_range``
  (integers, both ends included), then a random ``crop_size`` square; or, with ``multiscale``,
  TSN's multi-scale crop: short side resized to ``spec.test_short_side`` (the 256/224 ratio TSN
  trains at), a crop whose sides are drawn from ``scales * short side`` with at most
  ``max_distort`` steps between the two sides' scale indices (sides within 3 px of the crop size
  snap to it), placed at one of TSN's 13 fixed positions, and resized to the crop square;
* optional horizontal flip with probability 1/2 (off unless asked for: direction-sensitive data);
* testing: short side resized to ``spec.test_short_side``, then the ``spec.test_crop`` centre
  square, or (three crops) the start, centre and end squares along the long side
  (left/centre/right for landscape frames, top/centre/bottom for portrait ones), centred on the
  short side. The test crop is the spec's ``test_crop_size`` (SlowFast: 256), or the training
  crop when that is unset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from effvid.errors import ConfigError
from effvid.spec import ArchSpec

TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


def as_clip_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` uint8 (numpy or torch) as a ``(T, 3, H, W)`` uint8 tensor view."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected frames as a (T, H, W, 3) uint8 array, got {tuple(clip.shape)} {clip.dtype}")
    return clip.permute(0, 3, 1, 2)


def resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ``(T, 3, H, W)`` uint8 clip resized to ``height x width`` (bilinear, antialiased).

    The result is uint8: on the CPU torch's native uint8 kernel rounds for us (it agrees with the
    float path to within one grey level); elsewhere the clip goes through float and is rounded
    and clamped back.
    """
    if clip.shape[-2:] == (height, width):
        return clip
    if clip.device.type == "cpu":
        return F.interpolate(clip, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    out = F.interpolate(clip.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(height, width)`` scaled so the shorter side is ``short``, aspect ratio kept (rounded)."""
    if height <= width:
        return short, max(short, round(width * short / height))
    return max(short, round(height * short / width)), short


def resize_short_side(clip: torch.Tensor, short: int) -> torch.Tensor:
    """The clip resized so its shorter side is ``short`` pixels (aspect ratio kept)."""
    return resize(clip, *short_side_size(clip.shape[-2], clip.shape[-1], short))


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``height x width`` window of every frame whose top-left corner is ``(top, left)``."""
    if top < 0 or left < 0 or top + height > clip.shape[-2] or left + width > clip.shape[-1]:
        raise ValueError(f"crop ({top}, {left}, {height}, {width}) outside a {tuple(clip.shape[-2:])} frame")
    return clip[..., top : top + height, left : left + width]


def three_crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """``(top, left)`` of the three ``size`` squares along the long side: start, centre, end."""
    if width >= height:
        top = (height - size) // 2
        return [(top, 0), (top, (width - size) // 2), (top, width - size)]
    left = (width - size) // 2
    return [(0, left), ((height - size) // 2, left), (height - size, left)]


def flip(clip: torch.Tensor) -> torch.Tensor:
    """Every frame mirrored left-right."""
    return clip.flip(-1)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The uint8 ``(T, 3, H, W)`` clip as float32 ``(C, T, H, W)``: ``(x / 255 - mean) / std``."""
    out = clip.permute(1, 0, 2, 3).contiguous().to(torch.float32)  # uint8 copy first: 4x less to move
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=out.device).view(-1, 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=out.device).view(-1, 1, 1, 1)
    return out.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def multiscale_crop_box(
    height: int,
    width: int,
    crop_size: int,
    generator: torch.Generator | None,
    *,
    scales: Sequence[float] = TSN_SCALES,
    max_distort: int = 1,
) -> tuple[int, int, int, int]:
    """TSN's multi-scale crop window ``(top, left, crop_h, crop_w)`` in a ``height x width`` frame.

    Side lengths are ``int(min(height, width) * scale)`` (snapped to ``crop_size`` when within
    3 px); the pair of scale indices for the two sides differs by at most ``max_distort``; the
    window sits at one of 13 fixed positions on a 4 x 4 grid of steps (corners, centre, edge
    midpoints, and the four quarter points), all drawn uniformly from ``generator``.
    """
    base = min(height, width)
    sizes = [crop_size if abs(int(base * s) - crop_size) < 3 else int(base * s) for s in scales]
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[_randint(len(pairs), generator)]
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    grid = [
        (0, 0), (0, 4), (4, 0), (4, 4), (2, 2),
        (2, 0), (2, 4), (4, 2), (0, 2),
        (1, 1), (1, 3), (3, 1), (3, 3),
    ]
    row, col = grid[_randint(len(grid), generator)]
    return row * h_step, col * w_step, crop_h, crop_w


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[0, high)`` from ``generator``."""
    return int(torch.randint(high, (1,), generator=generator).item())


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
        """The same region of a ``frame_height x frame_width`` frame with every length times
        ``factor``: the box at the same relative place within the room the frame leaves around it."""
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


def draw_box(spec: ArchSpec, frame_height: int, frame_width: int, generator: torch.Generator | None, *,
             flip: bool = False, multiscale: bool = False) -> CropBox:
    """The random training geometry of ``spec`` (module docstring) for frames of this size, drawn
    from ``generator`` in a fixed order: the short side (or TSN's box), the offsets, the flip."""
    size = spec.crop_size
    if multiscale:
        short = spec.test_short_side
        height, width = short_side_size(frame_height, frame_width, short)
        top, left, box_height, box_width = multiscale_crop_box(height, width, size, generator)
    else:
        low, high = spec.train_resize_range
        short = low + _randint(high - low + 1, generator)
        height, width = short_side_size(frame_height, frame_width, short)
        top = _randint(height - size + 1, generator)
        left = _randint(width - size + 1, generator)
        box_height = box_width = size
    flipped = flip and bool(_randint(2, generator))
    return CropBox(short, height, width, top, left, box_height, box_width, flipped)


def cut(clip: torch.Tensor, box: CropBox, spec: ArchSpec) -> torch.Tensor:
    """The ``(T, 3, H, W)`` uint8 clip cut by ``box`` into ``spec``'s normalised crop square."""
    window = crop(resize(clip, box.height, box.width), box.top, box.left, box.box_height, box.box_width)
    window = resize(window, spec.crop_size, spec.crop_size)
    return normalize(flip(window) if box.flipped else window, spec.mean, spec.std)


@dataclass(frozen=True)
class TrainTransform:
    """Random training geometry for one clip (see the module doc); build with :func:`train_transform`."""

    spec: ArchSpec
    flip: bool = False
    multiscale: bool = False

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None,
                 crop_index: int = 0) -> torch.Tensor:
        """The augmented, normalised clip; ``crop_index`` is ignored (one random crop)."""
        clip = as_clip_tensor(frames)
        box = draw_box(self.spec, clip.shape[-2], clip.shape[-1], generator, flip=self.flip,
                       multiscale=self.multiscale)
        return cut(clip, box, self.spec)


@dataclass(frozen=True)
class TestTransform:
    """Deterministic test geometry: centre crop or one of three ``spec.test_crop`` squares; build
    with :func:`test_transform`."""

    spec: ArchSpec
    num_crops: int = 1

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None,
                 crop_index: int = 0) -> torch.Tensor:
        """The normalised test view number ``crop_index`` (in ``range(num_crops)``)."""
        if not 0 <= crop_index < self.num_crops:
            raise ValueError(f"crop_index {crop_index} outside range({self.num_crops})")
        clip = resize_short_side(as_clip_tensor(frames), self.spec.test_short_side)
        size = self.spec.test_crop
        height, width = clip.shape[-2:]
        if self.num_crops == 1:
            top, left = (height - size) // 2, (width - size) // 2
        else:
            top, left = three_crop_offsets(height, width, size)[crop_index]
        return normalize(crop(clip, top, left, size, size), self.spec.mean, self.spec.std)


def train_transform(spec: ArchSpec, *, flip: bool = False, multiscale: bool = False) -> TrainTransform:
    """The training transform for ``spec``; a :class:`ConfigError` when the resize range is below the crop."""
    low = spec.test_short_side if multiscale else spec.train_resize_range[0]
    if low < spec.crop_size:
        key = "test_resize" if multiscale else "train_resize"
        raise ConfigError(f"ArchSpec.{key} short side {low} is smaller than crop_size {spec.crop_size}")
    return TrainTransform(spec, flip=flip, multiscale=multiscale)


def test_transform(spec: ArchSpec, *, num_crops: int = 1) -> TestTransform:
    """The test transform for ``spec``: 1 (centre) or 3 crops of ``spec.test_crop``; a
    :class:`ConfigError` for another count or a test resize below the test crop."""
    if num_crops not in (1, 3):
        raise ConfigError(f"num_crops must be 1 (centre crop) or 3 (three crops), got {num_crops!r}")
    if spec.test_short_side < spec.test_crop:
        key = "crop_size" if spec.test_crop_size is None else "test_crop_size"
        raise ConfigError(f"ArchSpec.test_resize {spec.test_short_side} is smaller than {key} {spec.test_crop}")
    return TestTransform(spec, num_crops=num_crops)

