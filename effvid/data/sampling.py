"""Frame-index sampling: which frames of a video make up a clip.

Two modes, both producing ``clip_len`` frame indices per clip as an int64 array within
``[0, num_frames - 1]``:

* ``"dense"`` (3D networks, mmaction's ``clip_len x frame_interval``): ``clip_len`` frames at a
  fixed ``stride``. Training picks a uniformly random integer start among all starts that keep
  the clip inside the video. Testing places ``num_clips`` clips with starts evenly spaced from
  the first valid start to the last one (both ends included); a single test clip is centred
  (PySlowFast's ``use_offset`` placement). With ``target_fps`` the stride is measured in frames
  at ``target_fps``: the step in source frames is ``stride * fps / target_fps`` (fractional
  allowed) and each index is rounded half up.
* ``"segments"`` (TSN/TSM and other 2D networks): the video is split into ``clip_len`` equal
  segments; training takes one uniformly random frame from each, testing takes the segment
  centres. With ``num_clips = K > 1`` test view ``k`` takes the frame at fraction
  ``(k + 0.5) / K`` of each segment, so the views are evenly shifted copies. ``stride`` and
  ``target_fps`` do not apply: segments always cover the whole video.

Short videos: when a video has fewer frames than a clip needs (``(clip_len - 1) * step + 1``
for dense clips, ``clip_len`` for segments), the clip starts at frame 0 and every index past
the end is clamped to the last frame, i.e. the last frame is repeated. A dense clip of 4 frames
at stride 2 from a 5-frame video is ``[0, 2, 4, 4]``; 4 segments of a 2-frame video are
``[0, 1, 1, 1]``. Every test view of a short video is the same clip.

A second clip over the same moment (:meth:`ClipSampler.train_like`, a distillation teacher's
clip at its own T and tau): a dense clip starts at the other clip's first frame, moved back only
as far as keeping it inside the video needs, so it covers the other clip's window whenever it
spans at least as much (a clip cut to its first ``T / gamma`` frames, or thinned to every
``gamma``-th frame, is then a part of it); segment clips cover the whole video anyway and reuse
the other clip's frames when both take the same number of segments.

Everything is deterministic: training depends only on the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from effvid.errors import ConfigError
from effvid.spec import ArchSpec

SamplingMode = Literal["dense", "segments"]


@dataclass(frozen=True)
class ClipSampler:
    """Samples the frame indices of one clip (training) or of ``num_clips`` views (testing).

    ``clip_len`` is the number of frames per clip (the number of segments in ``"segments"``
    mode); ``stride`` is the gap between consecutive frames of a dense clip, in frames at
    ``target_fps`` when that is set, else in source frames. See the module docstring for the
    placement rules and the short-video rule (repeat the last frame).
    """

    mode: SamplingMode
    clip_len: int
    stride: float = 1
    target_fps: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("dense", "segments"):
            raise ConfigError(f"sampling mode must be 'dense' or 'segments', got {self.mode!r}")
        if not isinstance(self.clip_len, int) or isinstance(self.clip_len, bool) or self.clip_len < 1:
            raise ConfigError(f"clip_len must be a positive integer, got {self.clip_len!r}")
        if not _positive_number(self.stride):
            raise ConfigError(f"stride must be a positive number, got {self.stride!r}")
        if self.target_fps is not None and not _positive_number(self.target_fps):
            raise ConfigError(f"target_fps must be a positive number or None, got {self.target_fps!r}")

    @classmethod
    def from_spec(cls, spec: ArchSpec, target_fps: float | None = None) -> ClipSampler:
        """The sampler that feeds a model built from ``spec`` (its T, tau and sampling mode)."""
        return cls(mode=spec.sampling, clip_len=spec.num_frames, stride=spec.frame_stride,
                   target_fps=target_fps)

    def train(self, num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
        """One randomly placed clip: ``(clip_len,)`` int64 indices in ``[0, num_frames - 1]``."""
        _check_num_frames(num_frames)
        if self.mode == "segments":
            if num_frames < self.clip_len:
                return _clamped(np.arange(self.clip_len), num_frames)
            bounds = np.arange(self.clip_len + 1) * num_frames // self.clip_len
            return rng.integers(bounds[:-1], bounds[1:]).astype(np.int64)
        step = self._step(fps)
        start = int(rng.integers(0, math.floor(self._last_start(num_frames, step)) + 1))
        return self._dense(start, step, num_frames)

    def train_like(self, other: ClipSampler, clip: np.ndarray, num_frames: int, fps: float,
                   rng: np.random.Generator) -> np.ndarray:
        """This sampler's training clip over the time window of ``clip``, a training clip that
        ``other`` drew from the same video (module docstring): ``(clip_len,)`` int64 indices.

        ``rng`` is drawn from only when segment clips of different lengths leave nothing to share.
        """
        _check_num_frames(num_frames)
        if self.mode == "segments":
            same = other.mode == "segments" and other.clip_len == self.clip_len
            return np.asarray(clip, dtype=np.int64) if same else self.train(num_frames, fps, rng)
        step = self._step(fps)
        start = min(int(clip[0]), math.floor(self._last_start(num_frames, step)))
        return self._dense(start, step, num_frames)

    def test(self, num_frames: int, fps: float, num_clips: int) -> list[np.ndarray]:
        """``num_clips`` deterministic views, each ``(clip_len,)`` int64 indices, in view order."""
        _check_num_frames(num_frames)
        if not isinstance(num_clips, int) or num_clips < 1:
            raise ConfigError(f"num_clips must be a positive integer, got {num_clips!r}")
        if self.mode == "segments":
            if num_frames < self.clip_len:
                return [_clamped(np.arange(self.clip_len), num_frames)] * num_clips
            # Frame at fraction (k + 0.5) / K of segment i, in exact integer arithmetic:
            # floor((2 * (i * K + k) + 1) * N / (2 * T * K)).
            segments = np.arange(self.clip_len) * num_clips
            denominator = 2 * self.clip_len * num_clips
            return [((2 * (segments + k) + 1) * num_frames // denominator).astype(np.int64)
                    for k in range(num_clips)]
        step = self._step(fps)
        last_start = self._last_start(num_frames, step)
        if num_clips == 1:
            starts = [last_start / 2]
        else:
            starts = [last_start * k / (num_clips - 1) for k in range(num_clips)]
        return [self._dense(start, step, num_frames) for start in starts]

    def _step(self, fps: float) -> float:
        """Gap between consecutive clip frames, in source frames."""
        if self.target_fps is None:
            return float(self.stride)
        if not _positive_number(fps):
            raise ConfigError(f"resampling to target_fps={self.target_fps} needs the video's fps, got {fps!r}")
        return self.stride * fps / self.target_fps

    def _last_start(self, num_frames: int, step: float) -> float:
        """Largest start that keeps a dense clip inside the video; 0 for short videos."""
        return max(0.0, num_frames - 1 - (self.clip_len - 1) * step)

    def _dense(self, start: float, step: float, num_frames: int) -> np.ndarray:
        positions = start + np.arange(self.clip_len) * step
        return _clamped(np.floor(positions + 0.5), num_frames)


def _clamped(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """``indices`` as int64, with anything past the end replaced by the last frame."""
    return np.minimum(indices, num_frames - 1).astype(np.int64)


def _check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"cannot sample a clip from a video with {num_frames!r} frames (need at least 1)")


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
