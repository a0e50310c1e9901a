"""VideoDataset: annotation records to items of sampled, transformed clips (batched by
:func:`effvid.data.loader.build_loader`).

An item is a dict ``{"clip", "label", "video_index", "view_index", "skipped", "failed_videos",
"valid", "error"}``, plus ``"teacher_clip"`` for a training set given a ``teacher_spec``:

* ``clip``: float ``(C, T, H, W)``;
* ``teacher_clip``: the same moment and region at the teacher's geometry (below);
* ``label``: a scalar LongTensor, or a float multi-hot ``(num_classes,)`` for multi-label data;
* ``video_index``/``view_index``: which record the clip came from and which test view (in
  training: which of its ``clips_per_video`` clips) it is; evaluation averages the views of one
  ``video_index``;
* ``skipped``: how many read attempts failed to produce this item (``on_error="skip"``); a
  count of attempts, not of files: one bad file tried for two items counts twice;
* ``failed_videos``: LongTensor ``(MAX_SUBSTITUTES,)``, the indices of the videos those failed
  attempts tried, padded with -1 (``skipped`` is the number of entries >= 0);
* ``valid``: false only for a test item whose video could not be read under ``on_error="skip"``
  (its ``clip`` is zeros and must not be scored); always true in training;
* ``error``: for an invalid item, the one-line reason (``"<path>: <reason>"``); else ``""``.

Training yields ``clips_per_video`` random clips per video (temporal jittering, PAS section 4.2:
item ``i`` is clip ``i % clips_per_video`` of video ``i // clips_per_video``, each with its own
random start and augmentation). Testing enumerates ``num_clips x num_crops`` views
per video: item ``i`` is view ``i % (K * C)`` of video ``i // (K * C)``, and view ``v`` is clip
``v // C`` (temporal) with crop ``v % C`` (spatial). Each such item opens and decodes its video
anew. :meth:`VideoDataset.video_item` (and :meth:`VideoDataset.by_video`, the dataset of whole
videos that evaluation loads) gives every view of one video at once from one open reader: each
temporal clip decoded once (clips that overlap or nearly touch in one decoding pass), its
``C`` crops cut from the same resized frames. The views are bit for bit those of the per-view
items (decoding forward from a keyframe gives the same frames whichever keyframe it starts from;
tests check it on H.264).

Memory cache (``cache="memory"``, for small datasets): the decoded uint8 frames of each video are
kept after their first read, so later epochs decode nothing. Training keeps every frame of a
video (the sampled frames change per epoch); testing keeps the frames its views need. The cache
is bounded by ``cache_bytes_max`` (default half the memory available at construction): the
construction probes a few videos, estimates the whole (frames x height x width x 3 bytes per
video) and refuses with an :class:`~effvid.errors.EffvidError` naming the bound when it would
not fit, and filling refuses the same way if the estimate was short. Each process has its own
cache. DataLoader workers: :func:`~effvid.data.loader.build_loader` with ``num_workers > 0`` fills the cache in
the calling process first (:meth:`VideoDataset.fill_cache`, decoding threads in parallel), so
workers started by ``fork`` (the Linux default) read that one copy, shared copy-on-write,
never written again; under the ``spawn``/``forkserver`` start methods each worker receives its
own copy of the filled cache (memory times the workers). Under DDP each rank caches every video
(the shards change per epoch). A video whose header frame count cannot all be decoded is not
cached and is read as without a cache; an unreadable one is tried again whenever an item needs it.

Teacher clips (``teacher_spec``, distillation with the teacher at its own geometry): each training
item also holds the teacher's clip of the same moment, sampled at the teacher's T and tau by
:meth:`~effvid.data.sampling.ClipSampler.train_like` (same start as the student's clip, moved back
only as far as the video's end needs; ``target_fps`` applies to both) and cut from the same region
with the same flip by :class:`~effvid.data.paired.PairedTrainTransform`, at the teacher's crop
size, mean and std. The student's clip is the one it would be without a teacher (same draws).
The frames of both are decoded in one read.

Randomness: each item draws from generators seeded by ``(seed, epoch, index)`` only, so an item
is the same whatever the worker count, the worker that loads it, or the rank. The epoch lives in
shared memory, so :meth:`VideoDataset.set_epoch` reaches persistent DataLoader workers too.

Unreadable videos (:class:`~effvid.errors.VideoError`): with ``on_error="raise"`` the error
propagates with its message (file and reason). With ``on_error="skip"``:

* in training each bad file is logged once per process (warning naming file and reason) and the
  next video (``video_index + 1``, wrapping) is tried instead, at most ``MAX_SUBSTITUTES``
  videos in all; if none of them can be read an :class:`~effvid.errors.EffvidError` says so;
* in testing nothing is substituted (a substitute would be scored twice under another index):
  the item comes back with ``valid`` false and its ``error``, for the evaluator to exclude the
  video and report it.

Two counts of unreadable videos: ``skipped`` (per item, above) counts failed attempts;
:attr:`VideoDataset.unreadable_files` holds the distinct files found unreadable, in this
process and in the workers of any :class:`~effvid.data.loader.VideoLoader` over the dataset whose batches this
process has iterated. A video shorter than the clip is not an error: the sampler repeats its
last frame.

:func:`~effvid.data.loader.build_loader` makes any :class:`~effvid.errors.EffvidError` raised
while loading an item reach the caller as the original exception, whatever the worker count.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from effvid.data.annotations import Annotation, VideoRecord
from effvid.data.decode import BACKENDS, VideoInfo, open_video
from effvid.data.paired import PairedTrainTransform
from effvid.data.sampling import ClipSampler
from effvid.data.transforms import (
    as_clip_tensor,
    crop,
    normalize,
    resize_short_side,
    test_transform,
    three_crop_offsets,
    train_transform,
)
from effvid.errors import ConfigError, EffvidError, VideoError
from effvid.spec import ArchSpec

log = logging.getLogger(__name__)

MAX_SUBSTITUTES = 16  # videos tried for one item (the asked one included) under on_error="skip"
CACHE_PROBES = 8
"""Videos probed (header only, spread over the annotation) to estimate the memory cache's size."""
CACHES: tuple[str, ...] = ("none", "memory")
_warned: set[str] = set()  # bad files already logged by this process
_cache_lock = threading.Lock()  # the cache's byte count, across fill_cache's threads


class VideoDataset(Dataset):
    """Clips of the videos in ``annotation`` shaped for a model built from ``spec``.

    ``flip`` (training only) mirrors half the clips; ``None`` or ``False`` leaves it off, the safe
    choice for direction-sensitive data. ``multiscale`` selects TSN's multi-scale crop for
    training; ``None`` uses it for segment-sampled (TSN-style 2D) specs. ``num_clips`` and
    ``num_crops`` (1 or 3) set the test views and are ignored in training; ``clips_per_video``
    (random clips of each video per epoch) and ``teacher_spec`` (items also carry the teacher's
    clip, module docstring) apply to training and are ignored in testing. ``reader_options``
    are passed to :func:`effvid.data.decode.open_video` (``threads``, ``frame_template``).
    An unknown ``backend`` (or ``"decord"`` without the decord package) is a :class:`ConfigError`
    here, not at the first batch. ``cache="memory"`` keeps decoded frames in memory, at most
    ``cache_bytes_max`` bytes (module docstring); a cache that would not fit is an
    :class:`EffvidError` here.
    """

    def __init__(
        self,
        annotation: Annotation,
        *,
        spec: ArchSpec,
        train: bool,
        backend: str = "pyav",
        num_clips: int = 1,
        num_crops: int = 1,
        on_error: Literal["raise", "skip"] = "raise",
        flip: bool | None = None,
        target_fps: float | None = None,
        seed: int = 0,
        multiscale: bool | None = None,
        reader_options: Mapping[str, Any] | None = None,
        cache: Literal["none", "memory"] = "none",
        cache_bytes_max: int | None = None,
        clips_per_video: int = 1,
        teacher_spec: ArchSpec | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if cache not in CACHES:
            raise ConfigError(f"data.cache must be one of {', '.join(CACHES)}, got {cache!r}")
        if cache_bytes_max is not None and (isinstance(cache_bytes_max, bool) or not isinstance(cache_bytes_max, int)
                                            or cache_bytes_max < 1):
            raise ConfigError(f"data.cache_bytes_max must be a positive number of bytes, got {cache_bytes_max!r}")
        if isinstance(clips_per_video, bool) or not isinstance(clips_per_video, int) or clips_per_video < 1:
            raise ConfigError(f"data.clips_per_video must be an integer >= 1, got {clips_per_video!r}")
        check_backend(backend)
        if not annotation.records:
            raise ConfigError(f"{annotation.source or 'the annotation'}: the annotation has no videos")
        self.records: tuple[VideoRecord, ...] = annotation.records
        self.class_names = annotation.class_names
        self.multilabel = annotation.multilabel
        self.source = annotation.source
        self.spec = spec
        self.train = train
        self.backend = backend
        self.on_error = on_error
        self.seed = seed
        self.reader_options = dict(reader_options or {})
        self.sampler = ClipSampler.from_spec(spec, target_fps=target_fps)
        self.clips_per_video = clips_per_video if train else 1
        self.teacher_sampler: ClipSampler | None = None
        self.pair: PairedTrainTransform | None = None
        if train:
            self.num_clips, self.num_crops = 1, 1
            use_multiscale = spec.sampling == "segments" if multiscale is None else multiscale
            self.transform = train_transform(spec, flip=bool(flip), multiscale=use_multiscale)
            if teacher_spec is not None:
                self.teacher_sampler = ClipSampler.from_spec(teacher_spec, target_fps=target_fps)
                self.pair = PairedTrainTransform(spec, teacher_spec, flip=bool(flip), multiscale=use_multiscale)
        else:
            if not isinstance(num_clips, int) or num_clips < 1:
                raise ConfigError(f"num_clips must be a positive integer, got {num_clips!r}")
            self.num_clips, self.num_crops = num_clips, num_crops
            self.transform = test_transform(spec, num_crops=num_crops)
        for record in self.records:
            labels = _labels(record)
            if not labels or any(not 0 <= label < spec.num_classes for label in labels):
                raise ConfigError(f"{record.video_id}: label {record.label!r} is outside "
                                  f"0..{spec.num_classes - 1} (ArchSpec.num_classes={spec.num_classes})")
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._unreadable: set[str] = set()
        self.cache = cache
        self.cache_bytes_max = (cache_bytes_max if cache_bytes_max is not None else _default_cache_bound()
                                ) if cache == "memory" else None
        self._cache: dict[int, _Frames] = {}
        self._cache_bytes = 0
        self._uncacheable: set[int] = set()  # their header's frames cannot all be decoded
        if cache == "memory":
            self._check_cache_estimate()

    @property
    def views_per_video(self) -> int:
        """Items per video: ``clips_per_video`` in training, ``num_clips * num_crops`` in testing."""
        return self.clips_per_video * self.num_clips * self.num_crops

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    @property
    def unreadable_files(self) -> frozenset[str]:
        """The distinct paths found unreadable so far (module docstring: which processes count).

        Grows over the dataset's life (it is not reset per epoch); under DDP each rank knows its
        own. ``len()`` of it is the number of bad files, where the sum of ``skipped`` counts attempts.
        """
        return frozenset(self._unreadable)

    def note_failed(self, failed_videos: torch.Tensor) -> None:
        """Record the videos named by a batch's ``failed_videos`` (-1 entries ignored) as unreadable."""
        for index in torch.as_tensor(failed_videos).reshape(-1).tolist():
            if index >= 0:
                self._unreadable.add(self.records[index].path)

    def set_epoch(self, epoch: int) -> None:
        """Make the random clips those of ``epoch`` (seen by every worker, persistent or not)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.records) * self.views_per_video

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} outside a dataset of {len(self)}")
        video, view = divmod(index, self.views_per_video)
        attempts = min(MAX_SUBSTITUTES, len(self.records)) if self.train else 1
        failed: list[int] = []
        for attempt in range(attempts):
            candidate = (video + attempt) % len(self.records)
            try:
                clips = self._load(candidate, view, self._seed_sequence(index, attempt))
            except VideoError as err:
                if self.on_error == "raise":
                    raise
                failed.append(candidate)
                self._unreadable.add(self.records[candidate].path)
                if not self.train:  # scored videos are never substituted: the evaluator drops this one
                    return self._item({"clip": self._placeholder()}, video, view, failed, error=str(err))
                if err.path not in _warned:
                    _warned.add(err.path)
                    log.warning("skipping unreadable video %s: %s", err.path, err.reason)
                last_error = err
                continue
            return self._item(clips, candidate, view, failed)
        raise EffvidError(f"on_error=skip: none of the {attempts} videos tried for item {index} "
                          f"(from {self.records[video].path}) could be read; last: {last_error}")

    def _item(self, clips: dict[str, torch.Tensor], video: int, view: int, failed: list[int],
              error: str = "") -> dict[str, Any]:
        """The item of ``clips`` (``"clip"``, and ``"teacher_clip"`` when there is a teacher)."""
        failed_videos = torch.full((MAX_SUBSTITUTES,), -1, dtype=torch.int64)
        failed_videos[: len(failed)] = torch.tensor(failed, dtype=torch.int64)
        return {**clips, "label": self.target(video), "video_index": video, "view_index": view,
                "skipped": len(failed), "failed_videos": failed_videos, "valid": not error, "error": error}

    def _placeholder(self) -> torch.Tensor:
        """The zero clip an invalid test item carries, shaped like every other test item's clip
        (``spec.test_crop`` square)."""
        size = self.spec.test_crop
        return torch.zeros(3, self.spec.num_frames, size, size, dtype=torch.float32)

    def target(self, video_index: int) -> torch.Tensor:
        """The label of a video: LongTensor scalar, or float multi-hot ``(num_classes,)``."""
        labels = _labels(self.records[video_index])
        if not self.multilabel:
            return torch.tensor(labels[0], dtype=torch.int64)
        target = torch.zeros(self.spec.num_classes, dtype=torch.float32)
        target[list(labels)] = 1.0
        return target

    def _seed_sequence(self, index: int, attempt: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, self.epoch, index, attempt])

    def _load(self, video: int, view: int, seeds: np.random.SeedSequence) -> dict[str, torch.Tensor]:
        """Decode and transform view ``view`` of video ``video`` (with the teacher's clip when
        there is a teacher): ``{"clip"[, "teacher_clip"]}``; VideoError when it cannot be read."""
        rng = np.random.default_rng(seeds)
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        if self.pair is not None:
            return self._load_pair(video, rng, generator)
        clip_index, crop_index = divmod(view, self.num_crops)
        with self._source(video) as source:
            info = source.info
            if self.train:
                indices = self.sampler.train(info.num_frames, info.fps, rng)
            else:
                indices = self.sampler.test(info.num_frames, info.fps, self.num_clips)[clip_index]
            frames = source.get_frames(indices)
        return {"clip": self.transform(frames, generator, crop_index)}

    def _load_pair(self, video: int, rng: np.random.Generator, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A training clip of ``video`` and the teacher's clip of the same moment and region, from
        one read of the frames they need."""
        with self._source(video) as source:
            info = source.info
            student = self.sampler.train(info.num_frames, info.fps, rng)
            teacher = self.teacher_sampler.train_like(self.sampler, student, info.num_frames, info.fps, rng)
            wanted = np.unique(np.concatenate([student, teacher]))
            decoded = source.get_frames(wanted)
        clip, teacher_clip = self.pair(decoded[np.searchsorted(wanted, student)],
                                       decoded[np.searchsorted(wanted, teacher)], generator)
        return {"clip": clip, "teacher_clip": teacher_clip}

    # ------------------------------------------------------------------ whole test videos

    def video_item(self, video: int) -> dict[str, Any]:
        """Every test view of video ``video`` from one open reader (module docstring).

        The item holds ``clip`` ``(K * C, C, T, H, W)`` (view ``v`` = row ``v``), ``view_index``
        ``(K * C,)``, and the keys of a per-view item for the whole video (``label``,
        ``video_index``, ``skipped``, ``failed_videos``, ``valid``, ``error``). Under
        ``on_error="skip"`` an unreadable video is an invalid item of zero clips.
        """
        if self.train:
            raise ValueError("video_item enumerates test views; this dataset is a training set")
        if not 0 <= video < len(self.records):
            raise IndexError(f"video {video} outside a dataset of {len(self.records)} videos")
        try:
            clips = self._load_views(video)
        except VideoError as err:
            if self.on_error == "raise":
                raise
            self._unreadable.add(self.records[video].path)
            placeholder = self._placeholder()
            clips = placeholder.expand(self.views_per_video, *placeholder.shape).contiguous()
            return self._video_item(clips, video, [video], error=str(err))
        return self._video_item(clips, video, [])

    def by_video(self, videos: Sequence[int] | None = None) -> VideoViews:
        """The dataset of whole test videos ``videos`` (default: all): item ``i`` is
        :meth:`video_item` of video ``videos[i]``."""
        return VideoViews(self, videos)

    def _video_item(self, clips: torch.Tensor, video: int, failed: list[int], error: str = "") -> dict[str, Any]:
        item = self._item({"clip": clips}, video, 0, failed, error)
        item["view_index"] = torch.arange(self.views_per_video, dtype=torch.int64)
        return item

    def _load_views(self, video: int) -> torch.Tensor:
        """The ``(K * C, C, T, H, W)`` test views of ``video``; VideoError when it cannot be read."""
        with self._source(video) as source:
            info = source.info
            clips = self.sampler.test(info.num_frames, info.fps, self.num_clips)
            frames = [None] * len(clips)
            for group in _decode_groups(clips):
                # one read for clips that overlap or nearly touch, cut back into clips
                wanted = np.unique(np.concatenate([clips[k] for k in group]))
                decoded = source.get_frames(wanted)
                for k in group:
                    frames[k] = decoded[np.searchsorted(wanted, clips[k])]
        return torch.stack([view for clip in frames for view in self._test_views(clip)])

    def _test_views(self, frames: np.ndarray) -> list[torch.Tensor]:
        """The ``C`` ``spec.test_crop`` test crops of one clip's frames, resized once:
        :class:`TestTransform`'s geometry, crop by crop (a test checks they are the transform's own)."""
        spec = self.spec
        clip = resize_short_side(as_clip_tensor(frames), spec.test_short_side)
        size = spec.test_crop
        height, width = clip.shape[-2:]
        if self.num_crops == 1:
            offsets = [((height - size) // 2, (width - size) // 2)]
        else:
            offsets = three_crop_offsets(height, width, size)
        return [normalize(crop(clip, top, left, size, size), spec.mean, spec.std) for top, left in offsets]

    # ------------------------------------------------------------------ frames: cache or reader

    @contextmanager
    def _source(self, video: int) -> Iterator[Any]:
        """What frames of ``video`` are read from: its cached frames, or an open reader (filling
        the cache first when there is one). Its ``info`` has at least one frame."""
        cached = self._cache.get(video)
        if cached is not None:
            yield cached
            return
        record = self.records[video]
        with open_video(record.path, self.backend, num_frames=record.num_frames, **self.reader_options) as reader:
            if reader.info.num_frames < 1:
                raise VideoError(record.path, "the video has no frames")
            if self.cache == "memory" and video not in self._uncacheable:
                cached = self._fill(video, reader)
            yield cached if cached is not None else reader

    def _fill(self, video: int, reader: Any) -> _Frames | None:
        """Decode what the cache keeps of ``video`` (module docstring) and keep it; None when the
        header's frames cannot all be decoded (the video is then read without the cache)."""
        info = reader.info
        if self.train:
            indices = None
            count = info.num_frames
        else:
            indices = np.unique(np.concatenate(self.sampler.test(info.num_frames, info.fps, self.num_clips)))
            count = len(indices)
        nbytes = count * info.height * info.width * 3
        with _cache_lock:
            if video in self._cache:
                return self._cache[video]
            if self._cache_bytes + nbytes > self.cache_bytes_max:
                raise EffvidError(
                    f"data.cache=memory: {self.records[video].path} would take the cache past cache_bytes_max="
                    f"{self.cache_bytes_max} ({_gib(self.cache_bytes_max)}; {len(self._cache)} videos, "
                    f"{_gib(self._cache_bytes)} cached); raise data.cache_bytes_max or set data.cache: none")
            self._cache_bytes += nbytes  # reserved before decoding, so parallel fills respect the bound
        try:
            frames = reader.get_frames(np.arange(info.num_frames) if indices is None else indices)
        except VideoError:
            with _cache_lock:
                self._cache_bytes -= nbytes
                self._uncacheable.add(video)
            return None
        except BaseException:
            with _cache_lock:
                self._cache_bytes -= nbytes
            raise
        entry = _Frames(info, frames, indices)
        with _cache_lock:
            self._cache[video] = entry
        return entry

    def fill_cache(self, threads: int | None = None) -> None:
        """Decode every video not cached yet into the memory cache now, ``threads`` at a time
        (default: the CPU count); a no-op without ``cache="memory"``.

        :func:`~effvid.data.loader.build_loader` calls it before starting workers. An unreadable video raises its
        VideoError under ``on_error="raise"``; under ``"skip"`` it is left for the items to report.
        """
        if self.cache != "memory":
            return
        missing = [v for v in range(len(self.records)) if v not in self._cache and v not in self._uncacheable]
        if not missing:
            return
        threads = max(1, min(len(missing), threads or os.cpu_count() or 1))
        log.info("data.cache=memory: decoding %d videos into memory (%d threads)", len(missing), threads)

        def fill(video: int) -> None:
            try:
                with self._source(video):
                    pass
            except VideoError:
                if self.on_error == "raise":
                    raise

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(fill, missing):
                pass

    @property
    def cache_bytes(self) -> int:
        """Bytes of decoded frames held by this process's memory cache."""
        return self._cache_bytes

    def _check_cache_estimate(self) -> None:
        """Refuse a memory cache that the probed videos say would exceed ``cache_bytes_max``."""
        count = len(self.records)
        probes = min(CACHE_PROBES, count)
        picks = sorted({round(i * (count - 1) / max(1, probes - 1)) for i in range(probes)})
        sizes = []
        for video in picks:
            record = self.records[video]
            try:
                with open_video(record.path, self.backend, num_frames=record.num_frames, **self.reader_options) as reader:
                    info = reader.info
            except VideoError:
                continue  # reported when its items are read
            frames = info.num_frames if self.train else min(info.num_frames, self.num_clips * self.spec.num_frames)
            sizes.append(frames * info.height * info.width * 3)
        if not sizes:
            return
        estimate = sum(sizes) / len(sizes) * count
        if estimate > self.cache_bytes_max:
            raise EffvidError(
                f"data.cache=memory: the {count} videos of {self.source or 'the annotation'} need about "
                f"{_gib(estimate)} of decoded frames (estimated from {len(sizes)} probed), more than "
                f"cache_bytes_max={self.cache_bytes_max} ({_gib(self.cache_bytes_max)}); "
                "raise data.cache_bytes_max or set data.cache: none")


class _Frames:
    """Decoded uint8 frames of one video held in memory: all of them, or those at sorted ``indices``;
    read like a :class:`~effvid.data.decode.VideoReader`."""

    __slots__ = ("info", "frames", "indices")

    def __init__(self, info: VideoInfo, frames: np.ndarray, indices: np.ndarray | None) -> None:
        self.info, self.frames, self.indices = info, frames, indices

    def get_frames(self, wanted: Sequence[int] | np.ndarray) -> np.ndarray:
        wanted = np.asarray(wanted, dtype=np.int64).reshape(-1)
        if self.indices is None:
            return self.frames[wanted]
        position = np.searchsorted(self.indices, wanted).clip(0, len(self.indices) - 1)
        if not np.array_equal(self.indices[position], wanted):
            raise KeyError(f"{self.info.path}: frames {sorted(set(wanted.tolist()) - set(self.indices.tolist()))} "
                           "are not in the cache")
        return self.frames[position]


class VideoViews(Dataset):
    """Whole test videos of a :class:`VideoDataset`: item ``i`` is ``dataset.video_item(videos[i])``
    (every view of the video, ``clip`` ``(K * C, C, T, H, W)``)."""

    def __init__(self, dataset: VideoDataset, videos: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.videos = list(range(len(dataset.records))) if videos is None else [int(v) for v in videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.video_item(self.videos[index])

    def note_failed(self, failed_videos: torch.Tensor) -> None:
        self.dataset.note_failed(failed_videos)

    def fill_cache(self, threads: int | None = None) -> None:
        self.dataset.fill_cache(threads)


def _decode_groups(clips: list[np.ndarray]) -> list[list[int]]:
    """The clips (by position) read together: in order of their first frame, a clip joins the
    previous group when it starts at most one clip span after the group's last frame (decoding
    those few frames costs less than a seek back to a keyframe)."""
    order = sorted(range(len(clips)), key=lambda k: (int(clips[k].min()), k))
    groups: list[list[int]] = []
    last = None
    for k in order:
        first, span = int(clips[k].min()), int(clips[k].max() - clips[k].min()) + 1
        if groups and first <= last + span:
            groups[-1].append(k)
            last = max(last, int(clips[k].max()))
        else:
            groups.append([k])
            last = int(clips[k].max())
    return groups


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def _default_cache_bound() -> int:
    """Half the memory available now (Linux ``MemAvailable``), else half the physical memory."""
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30


def check_backend(backend: object) -> None:
    """A :class:`ConfigError` naming ``backend`` and the choices unless it is a usable video backend."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r} (data.backend); choose one of {', '.join(BACKENDS)}")
    if backend == "decord" and find_spec("decord") is None:
        raise ConfigError("video backend 'decord' needs the decord package (pip install 'effvid[decord]'); "
                          "or use backend 'pyav'")


def _labels(record: VideoRecord) -> tuple[int, ...]:
    return (record.label,) if isinstance(record.label, int) else tuple(record.label)
