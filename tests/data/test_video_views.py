"""Whole test videos: every view of a video from one open reader, each clip decoded once, bit for bit
the per-view items."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import effvid.data.dataset as dataset_module
from effvid.data.dataset import VideoDataset, _decode_groups
from effvid.data.loader import build_loader
from effvid.errors import VideoError
from effvid.spec import ArchSpec
from videotools import list_annotation

# 64 x 96 index frames resized to 64 (a no-op) and cut into three 48 squares along the width
SPEC = ArchSpec("x", num_classes=5, num_frames=4, frame_stride=2, crop_size=48, train_resize=(64, 64),
                test_resize=56)


@pytest.fixture
def videos(make_index_video):
    """A short, a medium and a long video (the long one's clips lie far apart: several reads)."""
    return [make_index_video("short.mp4", 6, height=64), make_index_video("mid.mp4", 40, height=64),
            make_index_video("long.mp4", 400, height=64, gop=16)]


@pytest.mark.parametrize("views", [(3, 3), (3, 1), (10, 3)])
def test_whole_video_views_are_the_per_view_items_bit_for_bit(videos, views):
    data = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=views[0], num_crops=views[1])
    per_video = views[0] * views[1]
    for video in range(len(videos)):
        item = data.video_item(video)
        assert item["clip"].shape == (per_video, 3, 4, 48, 48) and item["clip"].dtype == torch.float32
        assert item["view_index"].tolist() == list(range(per_video))
        assert (item["video_index"], item["valid"], item["error"], item["skipped"]) == (video, True, "", 0)
        assert int(item["label"]) == video % 5
        one_by_one = torch.stack([data[video * per_video + view]["clip"] for view in range(per_video)])
        assert torch.equal(item["clip"], one_by_one)


def test_a_video_is_opened_once_for_all_its_views(videos, opens):
    data = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=3, num_crops=3)
    for video in range(len(videos)):
        data.video_item(video)
    assert opens == [str(v) for v in videos]
    opens.clear()
    for index in range(9):  # the per-view items, still there for predict and the bench: one open each
        data[index]
    assert opens == [str(videos[0])] * 9


def test_each_clip_is_read_once_and_nearby_clips_together(videos, monkeypatch):
    data = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=3, num_crops=3)
    reads: list[list[int]] = []
    real = dataset_module.open_video

    def recording(*args, **kwargs):
        reader = real(*args, **kwargs)
        get = reader.get_frames
        reader.get_frames = lambda indices: reads.append(list(indices)) or get(indices)
        return reader

    monkeypatch.setattr(dataset_module, "open_video", recording)
    data.video_item(2)  # 400 frames: clips at 0, 196, 393 lie far apart, one read each
    assert len(reads) == 3 and all(len(r) == 4 for r in reads)
    reads.clear()
    data.video_item(1)  # 40 frames: clips at 0, 17, 33 of 7 frames each, 11 frames apart: three reads
    assert len(reads) == 3
    reads.clear()
    five = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=5, num_crops=3)
    five.video_item(1)  # clips at 0, 8, 16, 25, 33: at most a clip span apart, one read of their frames
    assert len(reads) == 1 and reads[0] == sorted(set(reads[0])) and len(reads[0]) == 20


def test_decode_groups_merge_overlapping_and_close_clips():
    clips = [np.array([0, 2, 4, 6]), np.array([3, 5, 7, 9]), np.array([13, 15, 17, 19]), np.array([90, 92, 94, 96])]
    assert _decode_groups(clips) == [[0, 1, 2], [3]]
    assert _decode_groups([np.array([50, 51]), np.array([0, 1])]) == [[1], [0]]
    assert _decode_groups([np.array([5, 5, 5])] * 3) == [[0, 1, 2]]


def test_unreadable_video_is_an_invalid_whole_item_under_skip(videos, tmp_path):
    paths = [videos[0], tmp_path / "missing.mp4"]
    data = VideoDataset(list_annotation(paths), spec=SPEC, train=False, num_clips=2, num_crops=3, on_error="skip")
    item = data.video_item(1)
    assert not item["valid"] and item["clip"].shape == (6, 3, 4, 48, 48) and not item["clip"].any()
    assert item["error"].startswith(f"{paths[1]}: ") and item["failed_videos"][:2].tolist() == [1, -1]
    assert data.unreadable_files == {str(paths[1])}
    strict = VideoDataset(list_annotation(paths), spec=SPEC, train=False, num_clips=2, num_crops=3)
    with pytest.raises(VideoError, match="missing.mp4"):
        strict.video_item(1)


def test_by_video_loads_whole_videos_in_batches(videos):
    data = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=2, num_crops=3)
    shard = data.by_video([2, 0])
    assert len(shard) == 2 and shard.videos == [2, 0]
    batch = next(iter(build_loader(shard, batch_size=2, num_workers=0, shuffle=False, seed=0, drop_last=False)))
    assert batch["clip"].shape == (2, 6, 3, 4, 48, 48) and batch["view_index"].shape == (2, 6)
    assert batch["video_index"].tolist() == [2, 0] and batch["valid"].tolist() == [True, True]
    assert torch.equal(batch["clip"][1], data.video_item(0)["clip"])
    with pytest.raises(ValueError, match="training set"):
        VideoDataset(list_annotation(videos), spec=SPEC.replace(test_resize=64), train=True).video_item(0)
