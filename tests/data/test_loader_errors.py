"""A user error raised while loading an item reaches the caller as itself (same type, one-line
message) with 0, 1 or 2 DataLoader workers; bugs keep torch's behaviour; a bad backend is refused
when the dataset is built; unreadable files are counted once each."""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils.data import Dataset

from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.errors import ConfigError, EffvidError, VideoError
from effvid.spec import ArchSpec
from videotools import list_annotation


def list_annotation_4(paths):
    return list_annotation(paths, 4, source="list.txt")


SPEC = ArchSpec("x", num_classes=4, num_frames=4, frame_stride=2, crop_size=48, train_resize=(48, 48), test_resize=48)


def loader(dataset, workers: int, batch_size: int = 2):
    return build_loader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False, seed=0, drop_last=False)


@pytest.fixture
def empty_video(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_raise_gives_the_original_video_error(make_index_video, empty_video, workers):
    good = make_index_video("good.mp4", 16)
    data = VideoDataset(list_annotation_4([good, empty_video, good]), spec=SPEC, train=True, on_error="raise")
    with pytest.raises(VideoError) as info:
        list(loader(data, workers))
    assert type(info.value) is VideoError
    assert str(info.value) == f"{empty_video}: empty file (0 bytes)"
    assert (info.value.path, info.value.reason) == (str(empty_video), "empty file (0 bytes)")


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_skip_with_nothing_readable_is_one_line(tmp_path, empty_video, workers):
    missing = tmp_path / "missing.mp4"
    data = VideoDataset(list_annotation_4([empty_video, missing]), spec=SPEC, train=True, on_error="skip")
    with pytest.raises(EffvidError) as info:
        list(loader(data, workers))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert "none of the 2 videos" in message and str(empty_video) in message


def test_persistent_workers_recover_after_an_error(make_index_video, empty_video):
    good = make_index_video("good.mp4", 16)
    data = VideoDataset(list_annotation_4([good, empty_video]), spec=SPEC, train=True, on_error="raise")
    batches = loader(data, 2, batch_size=1)
    for _ in range(2):  # the error comes again next epoch, the workers still answer
        with pytest.raises(VideoError):
            list(batches)
    assert next(iter(batches))["clip"].shape == (1, 3, 4, 48, 48)  # item 0 (readable) comes first


class _Buggy(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise KeyError("a bug")


@pytest.mark.parametrize("workers", [0, 1])
def test_bugs_keep_torch_behaviour(workers):
    with pytest.raises(KeyError) as info:
        list(loader(_Buggy(), workers))
    if workers:
        assert "Original Traceback" in str(info.value)  # torch's worker report, untouched
    # torch's re-raise leaves its iterator in a reference cycle; a garbage-collected iterator waits
    # 5 s per worker to shut down (in a later test), so free it now.
    traceback.clear_frames(info.tb)


class _OddError(EffvidError):
    def __init__(self, a: str, b: str) -> None:  # cannot be rebuilt from its message
        super().__init__(f"{a} and {b}")


class _RaisesOdd(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise _OddError("left.mp4", "right")


def test_a_user_error_that_does_not_pickle_keeps_its_message():
    with pytest.raises(EffvidError, match=r"^left\.mp4 and right$"):
        list(loader(_RaisesOdd(), 1))


def test_unknown_backend_is_refused_when_the_dataset_is_built(make_index_video):
    with pytest.raises(ConfigError) as info:
        VideoDataset(list_annotation_4([make_index_video("v.mp4", 8)]), spec=SPEC, train=True, backend="foo")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "'foo'" in message
    assert all(name in message for name in ("pyav", "decord", "frames"))


def test_loader_dataset_forwards_to_the_dataset(make_index_video):
    data = VideoDataset(list_annotation_4([make_index_video("v.mp4", 8)]), spec=SPEC, train=True)
    wrapped = loader(data, 0).dataset
    assert len(wrapped) == 1 and wrapped.records is data.records and wrapped.unreadable_files == frozenset()


@pytest.mark.parametrize("workers", [0, 2])
def test_distinct_unreadable_files_and_attempts_are_counted_apart(make_index_video, tmp_path, workers):
    """Two bad files next to each other: items 1 and 2 both try file 2, so 3 attempts fail for 2 files."""
    good = make_index_video("good.mp4", 16)
    bad = [tmp_path / "bad1.mp4", tmp_path / "bad2.mp4"]
    data = VideoDataset(list_annotation_4([good, *bad, good]), spec=SPEC, train=True, on_error="skip")
    batches = list(loader(data, workers))
    skipped = torch.cat([b["skipped"] for b in batches])
    assert skipped.tolist() == [0, 2, 1, 0] and int(skipped.sum()) == 3
    failed = torch.cat([b["failed_videos"] for b in batches])
    assert failed[1, :2].tolist() == [1, 2] and failed[2, :1].tolist() == [2] and int((failed >= 0).sum()) == 3
    assert data.unreadable_files == {str(p) for p in bad}  # seen by the workers, known here
    list(loader(data, workers))  # another epoch finds the same two files
    assert len(data.unreadable_files) == 2


def test_a_subset_fetched_by_batch_still_raises_the_original(make_index_video, empty_video):
    from torch.utils.data import Subset  # torch fetches a Subset's batches through __getitems__

    good = make_index_video("good.mp4", 16)
    data = VideoDataset(list_annotation_4([good, empty_video]), spec=SPEC, train=True, on_error="raise")
    with pytest.raises(VideoError, match=r"empty file \(0 bytes\)$"):
        list(loader(Subset(data, [0, 1]), 1))
