"""``cache="memory"``: decoded frames kept after their first read, the same clips as decoding, no file
opened in later epochs (with workers too), and a memory bound refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import effvid.data.dataset as dataset_module
from effvid.data.annotations import Annotation, VideoRecord
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.errors import ConfigError, EffvidError
from effvid.spec import ArchSpec
from videotools import list_annotation

SPEC = ArchSpec("x", num_classes=5, num_frames=4, frame_stride=2, crop_size=48, train_resize=(56, 72),
                test_resize=56)
FRAMES = [24, 30, 40, 16, 33]  # 64 x 96 index frames


@pytest.fixture
def videos(make_index_video):
    return [make_index_video(f"v{i}.mp4", n, height=64) for i, n in enumerate(FRAMES)]


@pytest.fixture
def open_log(monkeypatch, tmp_path) -> Path:
    """A file that gets one line (path, pid) per ``open_video`` call by the dataset, from any process (fork)."""
    log = tmp_path / "opens.log"
    log.write_text("")
    real = dataset_module.open_video

    def counting(path, *args, **kwargs):
        with open(log, "a") as file:
            file.write(f"{path} {__import__('os').getpid()}\n")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "open_video", counting)
    return log


def opened(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    log.write_text("")
    return [line.rsplit(" ", 1)[0] for line in lines]


def epoch_items(loader, epoch: int) -> dict[int, torch.Tensor]:
    loader.set_epoch(epoch)
    return {int(v): clip for batch in loader for v, clip in zip(batch["video_index"], batch["clip"])}


def test_cached_training_clips_are_the_decoded_clips_and_epoch_two_opens_nothing(videos, open_log):
    plain = VideoDataset(list_annotation(videos), spec=SPEC, train=True, seed=4, flip=True)
    cached = VideoDataset(list_annotation(videos), spec=SPEC, train=True, seed=4, flip=True, cache="memory")
    assert len(opened(open_log)) == len(videos)  # the size probe (header only)
    loaders = [build_loader(d, batch_size=2, num_workers=0, shuffle=True, seed=1, drop_last=False)
               for d in (plain, cached)]
    for epoch in (0, 1, 2):
        expected = epoch_items(loaders[0], epoch)
        opened(open_log)
        got = epoch_items(loaders[1], epoch)
        opens = opened(open_log)
        assert len(opens) == (len(videos) if epoch == 0 else 0), (epoch, opens)
        assert sorted(got) == list(range(len(videos)))
        assert all(torch.equal(got[v], expected[v]) for v in got)
    assert cached.cache_bytes == sum(FRAMES) * 64 * 96 * 3  # every frame of every video


def test_several_clips_per_video_are_cut_from_one_decode(videos, open_log):
    teacher = SPEC.replace(num_frames=8, crop_size=64, train_resize=(64, 64))
    kwargs = dict(spec=SPEC, train=True, seed=6, clips_per_video=3, teacher_spec=teacher)
    plain = VideoDataset(list_annotation(videos), **kwargs)
    cached = VideoDataset(list_annotation(videos), cache="memory", **kwargs)
    opened(open_log)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(cached)):
            got, expected = cached[index], plain[index]
            assert torch.equal(got["clip"], expected["clip"]) and torch.equal(got["teacher_clip"], expected["teacher_clip"])
    opens = opened(open_log)
    assert sorted(set(opens)) == sorted(str(v) for v in videos)
    assert len(opens) == 2 * 3 * len(videos) + len(videos)  # plain opens per item; the cache once per video


def test_workers_read_the_cache_filled_before_they_start(videos, open_log):
    plain = VideoDataset(list_annotation(videos), spec=SPEC, train=True, seed=2)
    cached = VideoDataset(list_annotation(videos), spec=SPEC, train=True, seed=2, cache="memory")
    opened(open_log)
    loader = build_loader(cached, batch_size=2, num_workers=2, shuffle=True, seed=0, drop_last=False)
    assert sorted(opened(open_log)) == sorted(str(v) for v in videos)  # filled here, in this process
    reference = build_loader(plain, batch_size=2, num_workers=0, shuffle=True, seed=0, drop_last=False)
    for epoch in (0, 1):
        expected = epoch_items(reference, epoch)
        opened(open_log)
        got = epoch_items(loader, epoch)
        assert opened(open_log) == []  # the workers (forked) decode nothing
        assert all(torch.equal(got[v], expected[v]) for v in range(len(videos)))


def test_test_mode_caches_the_frames_its_views_need(videos, open_log):
    plain = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=3, num_crops=3)
    cached = VideoDataset(list_annotation(videos), spec=SPEC, train=False, num_clips=3, num_crops=3, cache="memory")
    for video in range(len(videos)):
        assert torch.equal(cached.video_item(video)["clip"], plain.video_item(video)["clip"])
    opened(open_log)
    for video in range(len(videos)):
        assert torch.equal(cached.video_item(video)["clip"], plain.video_item(video)["clip"])
        assert torch.equal(cached[video * 9 + 4]["clip"], plain[video * 9 + 4]["clip"])  # per-view items too
    assert [line for line in opened(open_log) if line] == [str(v) for v in videos for _ in range(2)]  # plain's
    needed = sum(len({int(i) for clip in plain.sampler.test(n, 25.0, 3) for i in clip}) for n in FRAMES)
    assert cached.cache_bytes == needed * 64 * 96 * 3 < sum(FRAMES) * 64 * 96 * 3


def test_a_cache_over_the_bound_is_refused_at_construction(videos):
    total = sum(FRAMES) * 64 * 96 * 3
    VideoDataset(list_annotation(videos), spec=SPEC, train=True, cache="memory", cache_bytes_max=total)
    with pytest.raises(EffvidError) as info:
        VideoDataset(list_annotation(videos), spec=SPEC, train=True, cache="memory", cache_bytes_max=total // 2)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and f"cache_bytes_max={total // 2}" in message
    assert "5 videos" in message and "data.cache: none" in message


def test_a_cache_that_outgrows_its_estimate_is_refused_while_filling(videos, monkeypatch):
    monkeypatch.setattr(dataset_module, "CACHE_PROBES", 1)  # probes the first video only: 24 frames
    bound = 24 * 64 * 96 * 3 * 5 + 1  # fits the estimate (5 videos of 24 frames), not the 143 frames
    data = VideoDataset(list_annotation(videos), spec=SPEC, train=True, cache="memory", cache_bytes_max=bound)
    data[0]
    with pytest.raises(EffvidError) as info:
        for index in range(1, 5):
            data[index]
    message = str(info.value)
    assert len(message.splitlines()) == 1 and f"cache_bytes_max={bound}" in message and "would take" in message
    assert data.cache_bytes <= bound


def test_cache_arguments_are_checked():
    records = (VideoRecord(path="/nowhere.mp4", label=0, video_id="x"),)
    ann = Annotation(records=records, class_names=("a",) * 5, multilabel=False, format="mmaction")
    with pytest.raises(ConfigError, match="data.cache must be one of none, memory"):
        VideoDataset(ann, spec=SPEC, train=True, cache="disk")
    with pytest.raises(ConfigError, match="cache_bytes_max"):
        VideoDataset(ann, spec=SPEC, train=True, cache="memory", cache_bytes_max=0)
    assert VideoDataset(ann, spec=SPEC, train=True, cache="memory").cache_bytes == 0  # unreadable probes pass
