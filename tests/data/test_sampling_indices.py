"""Frame indices of dense clips and TSN segments, in train and test mode, with exact arrays."""

from __future__ import annotations

import numpy as np
import pytest

from effvid.data.sampling import ClipSampler
from effvid.errors import ConfigError
from effvid.spec import ArchSpec


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def as_lists(clips: list[np.ndarray]) -> list[list[int]]:
    return [clip.tolist() for clip in clips]


def test_dense_train_clip_is_strided_and_inside_the_video():
    sampler = ClipSampler("dense", clip_len=4, stride=3)
    starts = set()
    for seed in range(200):
        clip = sampler.train(20, 30.0, rng(seed))
        assert clip.dtype == np.int64 and clip.shape == (4,)
        assert np.all(np.diff(clip) == 3)
        assert 0 <= clip[0] and clip[-1] <= 19
        starts.add(int(clip[0]))
    assert starts == set(range(11))  # every valid start 0..19-9 is reachable


def test_dense_train_is_deterministic_given_the_rng():
    sampler = ClipSampler("dense", clip_len=8, stride=2)
    assert np.array_equal(sampler.train(100, 25.0, rng(7)), sampler.train(100, 25.0, rng(7)))


def test_dense_test_clips_are_evenly_spaced_from_first_to_last_start():
    sampler = ClipSampler("dense", clip_len=4, stride=2)
    # 20 frames, a clip spans 7: starts 0, 6.5, 13 -> rounded half up
    assert as_lists(sampler.test(20, 30.0, 3)) == [[0, 2, 4, 6], [7, 9, 11, 13], [13, 15, 17, 19]]


def test_single_dense_test_clip_is_centred():
    sampler = ClipSampler("dense", clip_len=4, stride=2)
    assert as_lists(sampler.test(21, 30.0, 1)) == [[7, 9, 11, 13]]
    assert as_lists(sampler.test(8, 30.0, 1)) == [[1, 3, 5, 7]]  # start 0.5: indices round half up


def test_fps_resampling_measures_stride_at_target_fps():
    # 4 frames at stride 1 of a 10 fps clip from a 25 fps video: a step of 2.5 source frames.
    sampler = ClipSampler("dense", clip_len=4, stride=1, target_fps=10)
    assert as_lists(sampler.test(30, 25.0, 1)) == [[11, 13, 16, 18]]  # start 10.75
    assert as_lists(sampler.test(30, 25.0, 2)) == [[0, 3, 5, 8], [22, 24, 27, 29]]
    # stride 2 at 15 fps from 30 fps: step 4
    doubled = ClipSampler("dense", clip_len=3, stride=2, target_fps=15)
    assert as_lists(doubled.test(9, 30.0, 1)) == [[0, 4, 8]]
    clip = doubled.train(50, 30.0, rng(3))
    assert np.all(np.diff(clip) == 4)


def test_fps_resampling_needs_a_valid_fps():
    with pytest.raises(ConfigError, match="needs the video's fps"):
        ClipSampler("dense", clip_len=4, target_fps=10).train(30, 0.0, rng())


def test_short_video_repeats_the_last_frame():
    sampler = ClipSampler("dense", clip_len=4, stride=2)
    assert sampler.train(5, 30.0, rng()).tolist() == [0, 2, 4, 4]
    assert as_lists(sampler.test(5, 30.0, 2)) == [[0, 2, 4, 4], [0, 2, 4, 4]]
    assert ClipSampler("dense", clip_len=5).test(1, 30.0, 1)[0].tolist() == [0, 0, 0, 0, 0]
    segments = ClipSampler("segments", clip_len=4)
    assert segments.train(2, 30.0, rng()).tolist() == [0, 1, 1, 1]
    assert as_lists(segments.test(3, 30.0, 1)) == [[0, 1, 2, 2]]


def test_segment_centres_in_test_mode():
    sampler = ClipSampler("segments", clip_len=4)
    # segments of 2.5 frames: centres 1.25, 3.75, 6.25, 8.75
    assert as_lists(sampler.test(10, 30.0, 1)) == [[1, 3, 6, 8]]
    assert as_lists(sampler.test(8, 30.0, 1)) == [[1, 3, 5, 7]]


def test_several_segment_views_are_evenly_shifted_inside_segments():
    sampler = ClipSampler("segments", clip_len=2)
    # segments [0, 6) and [6, 12); views at 1/6, 3/6 and 5/6 of each segment
    assert as_lists(sampler.test(12, 30.0, 3)) == [[1, 7], [3, 9], [5, 11]]


def test_segment_train_takes_one_random_frame_per_segment():
    sampler = ClipSampler("segments", clip_len=3, stride=4, target_fps=5)  # stride, fps do not apply
    seen = [set(), set(), set()]
    for seed in range(100):
        clip = sampler.train(9, 30.0, rng(seed))
        assert clip.dtype == np.int64
        for segment, index in enumerate(clip.tolist()):
            assert 3 * segment <= index < 3 * segment + 3
            seen[segment].add(index)
    assert seen == [{0, 1, 2}, {3, 4, 5}, {6, 7, 8}]


def test_from_spec_reads_frames_stride_and_mode():
    dense = ClipSampler.from_spec(ArchSpec(name="x", num_frames=8, frame_stride=4), target_fps=15)
    assert dense == ClipSampler("dense", clip_len=8, stride=4, target_fps=15)
    tsn = ClipSampler.from_spec(ArchSpec(name="x", num_frames=8, sampling="segments"))
    assert tsn.mode == "segments" and tsn.clip_len == 8


@pytest.mark.parametrize("kwargs", [dict(mode="sparse", clip_len=4), dict(mode="dense", clip_len=0),
                                    dict(mode="dense", clip_len=4, stride=0),
                                    dict(mode="dense", clip_len=4, target_fps=-1)])
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ClipSampler(**kwargs)


def test_empty_video_and_bad_view_count_are_refused():
    sampler = ClipSampler("dense", clip_len=4)
    with pytest.raises(ValueError, match="0 frames"):
        sampler.train(0, 30.0, rng())
    with pytest.raises(ConfigError, match="num_clips"):
        sampler.test(10, 30.0, 0)


def test_a_second_dense_clip_starts_where_the_first_does():
    student = ClipSampler("dense", clip_len=4, stride=2)
    clip = np.array([10, 12, 14, 16])
    same = student.train_like(student, clip, 64, 25.0, rng())
    assert same.tolist() == clip.tolist()
    longer = ClipSampler("dense", clip_len=8, stride=2)  # the student cut to its first T / 2 frames
    assert longer.train_like(student, clip, 64, 25.0, rng()).tolist() == [10, 12, 14, 16, 18, 20, 22, 24]
    denser = ClipSampler("dense", clip_len=8, stride=1)  # the student thinned to every 2nd frame
    assert denser.train_like(student, clip, 64, 25.0, rng()).tolist() == list(range(10, 18))


def test_a_second_dense_clip_moves_back_only_as_far_as_the_video_end_needs():
    student = ClipSampler("dense", clip_len=4, stride=2)
    longer = ClipSampler("dense", clip_len=8, stride=2)
    late = np.array([56, 58, 60, 62])
    teacher = longer.train_like(student, late, 64, 25.0, rng())
    assert teacher.tolist() == [49, 51, 53, 55, 57, 59, 61, 63]  # the last start; still covers 56..62
    assert longer.train_like(student, np.array([0, 2, 4, 4]), 5, 25.0, rng()).tolist() == [0, 2, 4, 4, 4, 4, 4, 4]
    resampled = ClipSampler("dense", clip_len=4, stride=1, target_fps=10)  # step 2.5 at 25 fps
    assert resampled.train_like(student, np.array([3, 5, 7, 9]), 64, 25.0, rng()).tolist() == [3, 6, 8, 11]


def test_a_second_segment_clip_shares_the_frames_when_it_can():
    eight = ClipSampler("segments", clip_len=8)
    clip = eight.train(40, 25.0, rng(1))
    assert eight.train_like(eight, clip, 40, 25.0, rng(2)).tolist() == clip.tolist()
    four = ClipSampler("segments", clip_len=4)
    other = four.train_like(eight, clip, 40, 25.0, rng(2))
    assert other.tolist() == four.train(40, 25.0, rng(2)).tolist()  # its own draw over the whole video
