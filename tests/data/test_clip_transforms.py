"""Clip transforms: shapes, exact crop positions, flip, scale jitter, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effvid.data import transforms as tf
from effvid.errors import ConfigError
from effvid.spec import ArchSpec

UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # normalised value = pixel / 255


def coordinate_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """Frames whose red channel is the column, green the row and blue the frame index."""
    frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(width)[None, None, :]
    frames[..., 1] = np.arange(height)[None, :, None]
    frames[..., 2] = np.arange(num_frames)[:, None, None]
    return frames


def pixels(clip: torch.Tensor) -> np.ndarray:
    """A UNIT-normalised (C, T, H, W) clip back to integer pixel values."""
    return np.rint(clip.numpy() * 255).astype(int)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_train_clip_shape_dtype_and_reproducibility():
    spec = ArchSpec("x", crop_size=32, num_frames=4)
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 60, 3), dtype=np.uint8)
    transform = tf.train_transform(spec)
    clip = transform(frames, gen(1))
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    assert torch.equal(clip, transform(torch.from_numpy(frames), gen(1)))
    assert not torch.equal(clip, transform(frames, gen(2)))


def test_centre_crop_position_without_resize():
    spec = ArchSpec("x", crop_size=24, test_resize=32, **UNIT)
    out = pixels(tf.test_transform(spec)(coordinate_frames(3, 32, 48)))
    assert out.shape == (3, 3, 24, 24)
    assert (out[0, :, :, 0] == 12).all() and (out[1, :, 0, :] == 4).all()  # left (48-24)//2, top (32-24)//2
    assert (out[2, :, 0, 0] == [0, 1, 2]).all()  # frame order kept, layout (C, T, H, W)


@pytest.mark.parametrize("height,width,expected", [
    (32, 48, [(0, 0), (0, 8), (0, 16)]),   # landscape: left, centre, right
    (48, 32, [(0, 0), (8, 0), (16, 0)]),   # portrait: top, centre, bottom
])
def test_three_crop_positions(height, width, expected):
    spec = ArchSpec("x", crop_size=32, test_resize=32, **UNIT)
    transform = tf.test_transform(spec, num_crops=3)
    frames = coordinate_frames(2, height, width)
    for index, (top, left) in enumerate(expected):
        out = pixels(transform(frames, None, index))
        assert out.shape == (3, 2, 32, 32)
        assert out[0, 0, 0, 0] == left and out[1, 0, 0, 0] == top
        assert (out[0, 0, 0] == np.arange(left, left + 32)).all()
    with pytest.raises(ValueError):
        transform(frames, None, 3)


def test_flip_mirrors_exactly_and_only_when_asked():
    spec = ArchSpec("x", crop_size=16, train_resize=(20, 24))
    frames = np.random.default_rng(3).integers(0, 256, (2, 24, 30, 3), dtype=np.uint8)
    plain, flipping = tf.train_transform(spec), tf.train_transform(spec, flip=True)
    flipped = 0
    for seed in range(16):
        a, b = plain(frames, gen(seed)), flipping(frames, gen(seed))
        if torch.equal(b, a.flip(-1)):
            flipped += 1
        else:
            assert torch.equal(a, b)
    assert 0 < flipped < 16
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    assert torch.equal(tf.flip(clip)[..., 0], clip[..., -1]) and tf.flip(clip).dtype == torch.uint8


def test_scale_jitter_stays_within_train_resize_range():
    low, high = 36, 60
    spec = ArchSpec("x", crop_size=32, train_resize=(low, high), **UNIT)
    frames = np.broadcast_to((np.arange(80) * 3).astype(np.uint8)[None, None, :, None], (1, 80, 80, 3))
    transform = tf.train_transform(spec)
    sides = []
    for seed in range(40):
        row = transform(frames.copy(), gen(seed))[0, 0, 16].numpy() * 255
        slope = (row[27] - row[4]) / 23  # interior columns: 3 * 80 / short side
        sides.append(240 / slope)
    assert low - 1 <= min(sides) and max(sides) <= high + 1
    assert min(sides) < low + 4 and max(sides) > high - 4


def test_resize_stays_uint8_and_matches_float_bilinear():
    clip = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    out = tf.resize_short_side(clip, 20)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 20, 28)
    ref = F.interpolate(clip.float(), size=(20, 28), mode="bilinear", antialias=True, align_corners=False)
    assert (out.float() - ref).abs().max() <= 1.0
    assert tf.crop(out, 2, 3, 10, 12).dtype == torch.uint8


def test_normalize_arithmetic_and_layout():
    frames = np.random.default_rng(5).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = tf.normalize(tf.as_clip_tensor(frames), mean, std)
    assert out.dtype == torch.float32 and out.shape == (3, 2, 4, 5)
    expected = (frames.transpose(3, 0, 1, 2) / 255.0 - np.array(mean)[:, None, None, None]) / np.array(std)[:, None, None, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_tsn_multiscale_crop_boxes_follow_tsn_rules():
    height, width, size = 64, 80, 56
    order = [64, 56, 48, 42]  # int(64 * s) for s in (1, .875, .75, .66); none within 3 px of 56 but 56
    allowed = set(order)
    boxes = {tf.multiscale_crop_box(height, width, size, gen(s)) for s in range(200)}
    for top, left, crop_h, crop_w in boxes:
        assert crop_h in allowed and crop_w in allowed
        assert abs(order.index(crop_h) - order.index(crop_w)) <= 1
        h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
        assert top in {k * h_step for k in range(5)} and left in {k * w_step for k in range(5)}
        assert top + crop_h <= height and left + crop_w <= width
    assert len({(h, w) for _, _, h, w in boxes}) == 10  # every admissible pair of the 4 scales
    spec = ArchSpec("x", crop_size=size, test_resize=64, num_frames=2)
    clip = tf.train_transform(spec, multiscale=True)(coordinate_frames(2, 64, 80), gen(0))
    assert clip.shape == (3, 2, size, size)


def test_builders_reject_impossible_geometry():
    with pytest.raises(ConfigError, match="num_crops"):
        tf.test_transform(ArchSpec("x"), num_crops=2)
    with pytest.raises(ConfigError, match="train_resize"):
        tf.train_transform(ArchSpec("x", crop_size=64, train_resize=(32, 80)))
    with pytest.raises(ConfigError, match="test_resize"):
        tf.test_transform(ArchSpec("x", crop_size=64, test_resize=48))
