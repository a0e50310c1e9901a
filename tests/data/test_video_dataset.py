"""VideoDataset and its loader on real MP4s whose frames encode their own index."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from effvid.data.annotations import Annotation, VideoRecord
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.data.sampling import ClipSampler
from effvid.data.transforms import normalize, resize
from effvid.errors import ConfigError, EffvidError, VideoError
from effvid.spec import ArchSpec
from videotools import decode_index

NUM_FRAMES = 64
# Frames are 96 x 96: a 96 crop at short side 96 is the whole frame, untouched, and a unit
# mean/std makes clip * 255 the decoded pixels, so decode_index reads each frame's index back.
SPEC = ArchSpec("x", num_classes=5, num_frames=4, frame_stride=2, crop_size=96, train_resize=(96, 96),
                test_resize=96, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def frame_indices(clip: torch.Tensor) -> list[int]:
    """The index encoded in each frame of a unit-normalised (C, T, H, W) clip."""
    frames = np.rint(clip.permute(1, 2, 3, 0).numpy() * 255).clip(0, 255).astype(np.uint8)
    return [decode_index(frame) for frame in frames]


def annotation(paths, labels, multilabel=False) -> Annotation:
    records = tuple(VideoRecord(path=str(p), label=label, video_id=str(p)) for p, label in zip(paths, labels))
    return Annotation(records=records, class_names=tuple(f"c{i}" for i in range(5)),
                      multilabel=multilabel, format="mmaction")


@pytest.fixture
def videos(make_index_video):
    return [make_index_video(f"v{i}.mp4", NUM_FRAMES, height=96) for i in range(4)]


def test_train_items_are_clips_of_the_sampled_frames(videos):
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=7)
    assert len(data) == 4
    starts = set()
    for index in range(4):
        item = data[index]
        assert item["clip"].shape == (3, 4, 96, 96) and item["clip"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].shape == () and int(item["label"]) == index
        assert (item["video_index"], item["view_index"], item["skipped"]) == (index, 0, 0)
        got = frame_indices(item["clip"])
        assert got == [got[0] + 2 * k for k in range(4)] and got[-1] < NUM_FRAMES
        starts.add(got[0])
    assert len(starts) > 1  # random starts
    assert torch.equal(data[2]["clip"], data[2]["clip"])  # same (seed, epoch, index), same clip
    data.set_epoch(1)
    assert any(frame_indices(data[i]["clip"]) != frame_indices(VideoDataset(
        annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=7)[i]["clip"]) for i in range(4))


def test_test_mode_enumerates_clips_times_crops_per_video(videos):
    spec = SPEC.replace(crop_size=48)  # three 48 squares along a 96 x 96 frame: left 0, 24, 48; top 24
    data = VideoDataset(annotation(videos[:2], [3, 4]), spec=spec, train=False, num_clips=2, num_crops=3)
    assert len(data) == 2 * 2 * 3
    expected = ClipSampler.from_spec(spec).test(NUM_FRAMES, 25.0, 2)
    for index in range(len(data)):
        item = data[index]
        video, view = divmod(index, 6)
        assert (item["video_index"], item["view_index"], item["skipped"]) == (video, view, 0)
        assert int(item["label"]) == [3, 4][video]
        assert item["clip"].shape == (3, 4, 48, 48)
        wanted = expected[view // 3].tolist()
        # Bit b of the index is the bar at columns 8b..8b+7, so a crop starting at column 8s reads index >> s.
        assert frame_indices(item["clip"]) == [i >> [0, 3, 6][view % 3] for i in wanted]


def test_multilabel_targets_are_multi_hot(videos):
    data = VideoDataset(annotation(videos[:2], [(0, 3), (2,)], multilabel=True), spec=SPEC, train=False)
    assert data[0]["label"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert data[1]["label"].dtype == torch.float32 and data[1]["label"].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]


def loader_clips(loader) -> dict[int, torch.Tensor]:
    return {int(v): c for batch in loader for v, c in zip(batch["video_index"], batch["clip"])}


def test_same_seed_same_clips_with_zero_and_two_workers(videos):
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=3)
    serial = build_loader(data, batch_size=2, num_workers=0, shuffle=True, seed=11, drop_last=False)
    parallel = build_loader(data, batch_size=2, num_workers=2, shuffle=True, seed=11, drop_last=False)
    for epoch in (0, 1):
        serial.set_epoch(epoch)
        parallel.set_epoch(epoch)
        order = [int(v) for b in serial for v in b["video_index"]]
        assert order == [int(v) for b in parallel for v in b["video_index"]] and sorted(order) == [0, 1, 2, 3]
        a, b = loader_clips(serial), loader_clips(parallel)
        assert all(torch.equal(a[v], b[v]) for v in range(4))
        if epoch == 0:
            first = a
    assert any(not torch.equal(first[v], a[v]) for v in range(4))  # epoch 1 reached persistent workers


def test_distributed_sampler_shards_are_disjoint_and_cover(videos):
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=False, num_clips=2)
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(1)
        shards.append([(int(v), int(w)) for b in DataLoader(data, batch_size=2, sampler=sampler)
                       for v, w in zip(b["video_index"], b["view_index"])])
    assert len(shards[0]) == len(shards[1]) == 4
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == [(v, w) for v in range(4) for w in range(2)]
    local = build_loader(data, batch_size=2, num_workers=0, shuffle=False, seed=0, drop_last=False, distributed=False)
    assert local.sampler.num_replicas == 1 and len(local.dataset) == 8


@pytest.fixture
def bad_and_good(make_index_video, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    good = [make_index_video(f"good{i}.mp4", 16, height=96) for i in range(2)]
    return [good[0], tmp_path / "missing.mp4", garbage, good[1]]


def test_on_error_raise_names_the_file(bad_and_good):
    data = VideoDataset(annotation(bad_and_good, [0, 1, 2, 3]), spec=SPEC, train=True, on_error="raise")
    assert data[0]["skipped"] == 0
    for index in (1, 2):
        with pytest.raises(VideoError) as info:
            data[index]
        assert str(bad_and_good[index]) in str(info.value) and info.value.reason


def test_on_error_skip_substitutes_counts_and_logs_once(bad_and_good, caplog):
    data = VideoDataset(annotation(bad_and_good, [0, 1, 2, 3]), spec=SPEC, train=True, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="effvid.data.dataset"):
        items = [data[i] for i in range(4)] + [data[1]]
    assert [(it["video_index"], it["skipped"]) for it in items] == [(0, 0), (3, 2), (3, 1), (3, 0), (3, 2)]
    assert int(items[1]["label"]) == 3 and items[1]["clip"].shape == (3, 4, 96, 96)
    warned = [r.getMessage() for r in caplog.records]
    for bad in bad_and_good[1:3]:
        assert sum(str(bad) in message for message in warned) == 1
    batch = next(iter(build_loader(data, batch_size=4, num_workers=0, shuffle=False, seed=0, drop_last=False)))
    assert int(batch["skipped"].sum()) == 3


def test_on_error_skip_gives_up_when_nothing_is_readable(tmp_path):
    paths = [tmp_path / f"missing{i}.mp4" for i in range(3)]
    data = VideoDataset(annotation(paths, [0, 1, 2]), spec=SPEC, train=True, on_error="skip")
    with pytest.raises(EffvidError, match="none of the 3 videos"):
        data[0]


def test_video_shorter_than_the_clip_repeats_its_last_frame(make_index_video):
    short = make_index_video("short.mp4", 3, height=96)  # a clip needs 7 frames (4 at stride 2)
    data = VideoDataset(annotation([short], [1]), spec=SPEC, train=True, on_error="raise")
    item = data[0]
    assert frame_indices(item["clip"]) == [0, 2, 2, 2] and item["skipped"] == 0


def test_test_mode_skip_marks_the_item_instead_of_substituting(bad_and_good, caplog):
    data = VideoDataset(annotation(bad_and_good, [0, 1, 2, 3]), spec=SPEC, train=False, num_clips=2, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="effvid.data.dataset"):
        items = [data[i] for i in range(len(data))]
    assert [(it["video_index"], it["view_index"], it["valid"]) for it in items] == [
        (v, w, v in (0, 3)) for v in range(4) for w in range(2)]
    for item in items:
        assert item["clip"].shape == (3, 4, 96, 96)  # a bad view keeps the shape so batches collate
        if not item["valid"]:
            video = item["video_index"]
            assert item["skipped"] == 1 and item["failed_videos"][:2].tolist() == [video, -1]
            assert not item["clip"].any() and int(item["label"]) == video  # its own label: nothing substituted
            assert item["error"].startswith(f"{bad_and_good[video]}: ") and len(item["error"].splitlines()) == 1
        else:
            assert item["skipped"] == 0 and item["error"] == "" and bool(item["clip"].any())
    assert not caplog.records  # the evaluator reports skipped videos, once each
    assert data.unreadable_files == {str(bad_and_good[1]), str(bad_and_good[2])}
    batch = next(iter(build_loader(data, batch_size=8, num_workers=0, shuffle=False, seed=0, drop_last=False)))
    assert batch["valid"].tolist() == [True, True, False, False, False, False, True, True]
    assert batch["error"][:2] == ["", ""] and batch["failed_videos"].shape == (8, 16)


def test_mmaction2_multilabel_list_trains_with_multi_hot_targets(make_index_video, tmp_path):
    from effvid.data.annotations import load_annotations

    for name in ("a", "b", "c"):
        make_index_video(f"{name}.mp4", 16, height=96)
    listing = tmp_path / "train.txt"
    listing.write_text("a.mp4 1 3\nb.mp4 0\nc.mp4 2 3 4\n")  # mmaction2's multi-label convention
    ann = load_annotations(listing)
    assert ann.multilabel and [r.label for r in ann.records] == [(1, 3), (0,), (2, 3, 4)]
    data = VideoDataset(ann, spec=SPEC, train=True)
    batch = next(iter(build_loader(data, batch_size=3, num_workers=0, shuffle=False, seed=0, drop_last=False)))
    assert batch["label"].dtype == torch.float32
    assert batch["label"].tolist() == [[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 1]]
    assert batch["clip"].shape == (3, 3, 4, 96, 96)


def test_clips_per_video_yields_that_many_clips_of_each_video_at_different_starts(videos):
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=7, clips_per_video=3)
    assert len(data) == 12 and data.views_per_video == 3
    starts: dict[int, list[int]] = {}
    for index in range(12):
        item = data[index]
        assert (item["video_index"], item["view_index"]) == divmod(index, 3)
        assert int(item["label"]) == index // 3
        got = frame_indices(item["clip"])
        assert got == [got[0] + 2 * k for k in range(4)]
        starts.setdefault(item["video_index"], []).append(got[0])
    assert all(len(set(s)) == 3 for s in starts.values())  # each clip its own random position
    one = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=7)
    assert [torch.equal(one[v]["clip"], data[3 * v]["clip"]) for v in range(4)] != [True] * 4  # item seeds


def test_clips_per_video_are_the_same_for_the_same_seed_and_epoch(videos):
    def clips(seed: int, epoch: int, history: tuple[int, ...] = ()) -> list[list[int]]:
        data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=seed, clips_per_video=3)
        for earlier in history:  # epochs an uninterrupted run went through first
            data.set_epoch(earlier)
            [data[i] for i in range(len(data))]
        data.set_epoch(epoch)
        return [frame_indices(data[i]["clip"]) for i in range(len(data))]

    resumed = clips(5, 2)
    assert resumed == clips(5, 2, history=(0, 1))  # a resumed run draws the clips of the epoch it resumes
    assert resumed != clips(5, 1) and resumed != clips(6, 2)


def test_clips_per_video_through_the_loader_and_distributed_shards(videos):
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=3, clips_per_video=3)
    loader = build_loader(data, batch_size=4, num_workers=0, shuffle=True, seed=1, drop_last=True)
    loader.set_epoch(0)
    assert len(loader) == 3
    seen = sorted((int(v), int(w)) for b in loader for v, w in zip(b["video_index"], b["view_index"]))
    assert seen == [(v, k) for v in range(4) for k in range(3)]
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(1)
        shards.append({(int(v), int(w)) for b in DataLoader(data, batch_size=2, sampler=sampler)
                       for v, w in zip(b["video_index"], b["view_index"])})
    assert len(shards[0]) == len(shards[1]) == 6 and not shards[0] & shards[1]


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_clips_per_video_must_be_a_positive_integer(videos, value):
    with pytest.raises(ConfigError, match=rf"^data.clips_per_video must be an integer >= 1, got {value!r}$"):
        VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, clips_per_video=value)


def test_teacher_clips_have_the_teacher_geometry_over_the_students_window(videos):
    student = SPEC.replace(crop_size=48, train_resize=(48, 48))  # the whole 96 x 96 frame at half size
    teacher = SPEC.replace(num_frames=8, frame_stride=1, mean=(0.5, 0.5, 0.5))  # T x 2 over the same span
    plain = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=student, train=True, seed=2, clips_per_video=2)
    paired = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=student, train=True, seed=2, clips_per_video=2,
                          teacher_spec=teacher)
    for index in range(len(paired)):
        item = paired[index]
        assert item["clip"].shape == (3, 4, 48, 48) and item["teacher_clip"].shape == (3, 8, 96, 96)
        assert torch.equal(item["clip"], plain[index]["clip"])  # the student's clip is the one it had alone
        frames = frame_indices(item["teacher_clip"] + 0.5)  # whole frames at full size: they decode
        assert frames == list(range(frames[0], frames[0] + 8)) and frames[-1] < NUM_FRAMES
        # every 2nd teacher frame, resized as the student's transform resizes, is the student's clip
        pixels = torch.from_numpy(np.rint((item["teacher_clip"][:, ::2] + 0.5).numpy() * 255).astype(np.uint8))
        halved = normalize(resize(pixels.permute(1, 0, 2, 3), 48, 48), student.mean, student.std)
        assert torch.equal(halved, item["clip"])
    batch = next(iter(build_loader(paired, batch_size=4, num_workers=0, shuffle=False, seed=0, drop_last=True)))
    assert batch["clip"].shape == (4, 3, 4, 48, 48) and batch["teacher_clip"].shape == (4, 3, 8, 96, 96)
    assert "teacher_clip" not in plain[0]


def test_teacher_clip_of_a_shorter_student_starts_with_the_students_frames(videos):
    teacher = SPEC.replace(num_frames=8)  # the student keeps the first T / 2 frames at the same stride
    data = VideoDataset(annotation(videos, [0, 1, 2, 3]), spec=SPEC, train=True, seed=4, teacher_spec=teacher)
    for index in range(4):
        item = data[index]
        student, frames = frame_indices(item["clip"]), frame_indices(item["teacher_clip"])
        assert len(frames) == 8 and frames == [frames[0] + 2 * k for k in range(8)]
        # same start, moved back only when 8 frames at stride 2 would run past the end
        assert frames[0] == min(student[0], NUM_FRAMES - 15) and set(student) <= set(frames)
