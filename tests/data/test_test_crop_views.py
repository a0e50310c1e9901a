"""A spec whose test crop differs from its training crop: validation views (per view, whole
video, and the zero clip of an unreadable video) are test-crop squares, training clips
training-crop squares."""

from __future__ import annotations

import pytest
import torch

from effvid.data.dataset import VideoDataset
from effvid.spec import ArchSpec
from videotools import list_annotation

# 64 x 96 index frames: trained on 32 squares of 40 px short sides, tested on 48 squares of 56 px ones
SPEC = ArchSpec("x", num_classes=5, num_frames=4, frame_stride=2, crop_size=32, test_crop_size=48,
                train_resize=(40, 40), test_resize=56)


@pytest.fixture
def videos(make_index_video):
    return [make_index_video("a.mp4", 40, height=64), make_index_video("b.mp4", 24, height=64)]


@pytest.mark.parametrize("views", [(2, 1), (2, 3)])
def test_validation_views_are_test_crops_and_training_clips_train_crops(videos, views):
    val = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=views[0], num_crops=views[1])
    per_video = views[0] * views[1]
    for video in range(len(videos)):
        whole = val.video_item(video)["clip"]
        assert whole.shape == (per_video, 3, 4, 48, 48)
        assert torch.equal(whole, torch.stack([val[video * per_video + v]["clip"] for v in range(per_video)]))
    train = VideoDataset(list_annotation(videos), spec=SPEC, train=True)
    assert all(train[i]["clip"].shape == (3, 4, 32, 32) for i in range(len(train)))


def test_an_unreadable_validation_video_is_a_zero_clip_at_the_test_crop(videos, tmp_path):
    missing = tmp_path / "missing.mp4"
    val = VideoDataset(list_annotation([videos[0], missing]), spec=SPEC, train=False, num_clips=2, num_crops=3,
                       on_error="skip")
    item = val[6]  # view 0 of the missing video
    assert not item["valid"] and item["clip"].shape == (3, 4, 48, 48) and not item["clip"].any()
    whole = val.video_item(1)
    assert not whole["valid"] and whole["clip"].shape == (6, 3, 4, 48, 48) and not whole["clip"].any()
    assert val.video_item(0)["clip"].shape == (6, 3, 4, 48, 48)
