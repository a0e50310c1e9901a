"""PairedTrainTransform: the first clip is the training transform's own, the second shows the same
region (same box, same flip) at the second spec's crop size, mean and std."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effvid.data.paired import PairedTrainTransform
from effvid.data.transforms import train_transform
from effvid.spec import ArchSpec

STUDENT = ArchSpec("x", num_classes=5, num_frames=4, crop_size=40, train_resize=(45, 60), test_resize=46)
TEACHER = STUDENT.replace(crop_size=80, train_resize=(90, 120), test_resize=92, mean=(0.5, 0.4, 0.3),
                          std=(0.2, 0.25, 0.3))


def smooth_frames(height: int = 90, width: int = 150) -> np.ndarray:
    """Four frames of slowly varying, left-right asymmetric colour: a crop's position shows in its pixels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 255 * x / width
    green = 127 + 120 * np.sin(2 * np.pi * y / height)
    blue = 127 + 120 * np.cos(2 * np.pi * (x + 2 * y) / width)
    frame = np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)
    return np.stack([frame] * 4)


def as_pixels(clip: torch.Tensor, spec: ArchSpec) -> torch.Tensor:
    """A normalised (C, T, H, W) clip back in 0..255."""
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    return (clip * std + mean) * 255


@pytest.mark.parametrize("multiscale", [False, True])
def test_the_first_clip_is_the_training_transforms_own(multiscale):
    frames = smooth_frames()
    pair = PairedTrainTransform(STUDENT, TEACHER, flip=True, multiscale=multiscale)
    alone = train_transform(STUDENT, flip=True, multiscale=multiscale)
    for seed in range(6):
        first, _ = pair(frames, frames, torch.Generator().manual_seed(seed))
        assert torch.equal(first, alone(frames, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("multiscale", [False, True])
def test_the_second_clip_shows_the_same_region_at_its_own_geometry(multiscale):
    frames = smooth_frames()
    pair = PairedTrainTransform(STUDENT, TEACHER, flip=True, multiscale=multiscale)
    errors, mismatched = [], []
    for seed in range(8):
        first, second = pair(frames, frames, torch.Generator().manual_seed(seed))
        assert first.shape == (3, 4, 40, 40) and second.shape == (3, 4, 80, 80)
        student = as_pixels(first, STUDENT)
        teacher = F.interpolate(as_pixels(second, TEACHER), size=(40, 40), mode="bilinear", antialias=True)
        errors.append(float((student - teacher).abs().mean()))
        mismatched.append(float((student - teacher.flip(-1)).abs().mean()))  # the flip is shared
        _, other = pair(frames, frames, torch.Generator().manual_seed(seed + 100))
        other = F.interpolate(as_pixels(other, TEACHER), size=(40, 40), mode="bilinear", antialias=True)
        mismatched.append(float((student - other).abs().mean()))
    assert max(errors) < 2.0  # grey levels: rounding and resampling only
    assert min(m for m in mismatched if m > 0) > 5 * max(errors)  # another box or flip shows


def test_equal_geometry_gives_the_same_clip_twice():
    frames = smooth_frames()
    first, second = PairedTrainTransform(STUDENT, STUDENT, flip=True)(frames, frames, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
