"""VideoDataset and build_loader: annotation records to batches of sampled, transformed clips.

An item is a dict ``{"clip", "label", "video_index", "view_index", "skipped", "failed_videos",
"valid", "error"}``:

* ``clip``: float ``(C, T, H, W)``;
* ``label``: a scalar LongTensor, or a float multi-hot ``(num_classes,)`` for multi-label data;
* ``video_index``/``view_index``: which record the clip came from and which test view it is
  (always 0 in training); evaluation averages the views of one ``video_index``;
* ``skipped``: how many read attempts failed to produce this item (``on_error="skip"``); a
  count of attempts, not of files: one bad file tried for two items counts twice;
* ``failed_videos``: LongTensor ``(MAX_SUBSTITUTES,)``, the indices of the videos those failed
  attempts tried, padded with -1 (``skipped`` is the number of entries >= 0);
* ``valid``: false only for a test item whose video could not be read under ``on_error="skip"``
  (its ``clip`` is zeros and must not be scored); always true in training;
* ``error``: for an invalid item, the one-line reason (``"<path>: <reason>"``); else ``""``.

Training yields one random clip per video. Testing enumerates ``num_clips x num_crops`` views
per video: item ``i`` is view ``i % (K * C)`` of video ``i // (K * C)``, and view ``v`` is clip
``v // C`` (temporal) with crop ``v % C`` (spatial).

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
process and in the workers of any :class:`VideoLoader` over the dataset whose batches this
process has iterated. A video shorter than the clip is not an error: the sampler repeats its
last frame.

:func:`build_loader` makes any :class:`~effvid.errors.EffvidError` raised while loading an item
reach the caller as the original exception (same type, same one-line message) whatever the
worker count; torch would otherwise rebuild it in the main process around the worker's
traceback. Other exceptions (bugs) keep torch's behaviour.
"""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Iterator, Mapping
from importlib.util import find_spec
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate, get_worker_info

from effvid.data.annotations import Annotation, VideoRecord
from effvid.data.decode import BACKENDS, open_video
from effvid.data.sampling import ClipSampler
from effvid.data.transforms import test_transform, train_transform
from effvid.errors import ConfigError, EffvidError, VideoError
from effvid.spec import ArchSpec

log = logging.getLogger(__name__)

MAX_SUBSTITUTES = 16  # videos tried for one item (the asked one included) under on_error="skip"
_warned: set[str] = set()  # bad files already logged by this process


class VideoDataset(Dataset):
    """Clips of the videos in ``annotation`` shaped for a model built from ``spec``.

    ``flip`` (training only) mirrors half the clips; ``None`` or ``False`` leaves it off, the safe
    choice for direction-sensitive data. ``multiscale`` selects TSN's multi-scale crop for
    training; ``None`` uses it for segment-sampled (TSN-style 2D) specs. ``num_clips`` and
    ``num_crops`` (1 or 3) set the test views and are ignored in training. ``reader_options``
    are passed to :func:`effvid.data.decode.open_video` (``threads``, ``frame_template``).
    An unknown ``backend`` (or ``"decord"`` without the decord package) is a :class:`ConfigError`
    here, not at the first batch.
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
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
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
        if train:
            self.num_clips, self.num_crops = 1, 1
            use_multiscale = spec.sampling == "segments" if multiscale is None else multiscale
            self.transform = train_transform(spec, flip=bool(flip), multiscale=use_multiscale)
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

    @property
    def views_per_video(self) -> int:
        """Items per video: 1 in training, ``num_clips * num_crops`` in testing."""
        return self.num_clips * self.num_crops

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
                clip = self._load(candidate, view, self._seed_sequence(index, attempt))
            except VideoError as err:
                if self.on_error == "raise":
                    raise
                failed.append(candidate)
                self._unreadable.add(self.records[candidate].path)
                if not self.train:  # scored videos are never substituted: the evaluator drops this one
                    return self._item(self._placeholder(), video, view, failed, error=str(err))
                if err.path not in _warned:
                    _warned.add(err.path)
                    log.warning("skipping unreadable video %s: %s", err.path, err.reason)
                last_error = err
                continue
            return self._item(clip, candidate, view, failed)
        raise EffvidError(f"on_error=skip: none of the {attempts} videos tried for item {index} "
                          f"(from {self.records[video].path}) could be read; last: {last_error}")

    def _item(self, clip: torch.Tensor, video: int, view: int, failed: list[int], error: str = "") -> dict[str, Any]:
        failed_videos = torch.full((MAX_SUBSTITUTES,), -1, dtype=torch.int64)
        failed_videos[: len(failed)] = torch.tensor(failed, dtype=torch.int64)
        return {"clip": clip, "label": self.target(video), "video_index": video, "view_index": view,
                "skipped": len(failed), "failed_videos": failed_videos, "valid": not error, "error": error}

    def _placeholder(self) -> torch.Tensor:
        """The zero clip an invalid test item carries, shaped like every other item's clip."""
        size = self.spec.crop_size
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

    def _load(self, video: int, view: int, seeds: np.random.SeedSequence) -> torch.Tensor:
        """Decode and transform view ``view`` of video ``video``; VideoError when it cannot be read."""
        record = self.records[video]
        rng = np.random.default_rng(seeds)
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        clip_index, crop_index = divmod(view, self.num_crops)
        with open_video(record.path, self.backend, num_frames=record.num_frames, **self.reader_options) as reader:
            info = reader.info
            if info.num_frames < 1:
                raise VideoError(record.path, "the video has no frames")
            if self.train:
                indices = self.sampler.train(info.num_frames, info.fps, rng)
            else:
                indices = self.sampler.test(info.num_frames, info.fps, self.num_clips)[clip_index]
            frames = reader.get_frames(indices)
        return self.transform(frames, generator, crop_index)


def check_backend(backend: object) -> None:
    """A :class:`ConfigError` naming ``backend`` and the choices unless it is a usable video backend."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r} (data.backend); choose one of {', '.join(BACKENDS)}")
    if backend == "decord" and find_spec("decord") is None:
        raise ConfigError("video backend 'decord' needs the decord package (pip install 'effvid[decord]'); "
                          "or use backend 'pyav'")


def _labels(record: VideoRecord) -> tuple[int, ...]:
    return (record.label,) if isinstance(record.label, int) else tuple(record.label)


class _UserError:
    """An :class:`EffvidError` raised while loading an item, carried back to the caller as data."""

    def __init__(self, error: EffvidError) -> None:
        self.error = error


class _CatchUserErrors(Dataset):
    """``dataset`` whose items become :class:`_UserError` when loading them raises an EffvidError.

    Attributes other than the item protocol are the wrapped dataset's (``set_epoch``, ``records``...).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.wrapped = dataset

    def __len__(self) -> int:
        return len(self.wrapped)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        try:
            return self.wrapped[index]
        except EffvidError as err:
            return _UserError(_picklable(err) if get_worker_info() is not None else err)

    def __getitems__(self, indices: list[int]) -> list[Any]:
        # torch fetches a batch through __getitems__ when the dataset has one (Subset does), which
        # the forwarding below would otherwise hand to the wrapped dataset, uncaught
        many = getattr(self.wrapped, "__getitems__", None)
        if many is None:
            return [self[index] for index in indices]
        try:
            return many(indices)
        except EffvidError as err:
            return [_UserError(_picklable(err) if get_worker_info() is not None else err)]

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.wrapped, name)


def _picklable(err: EffvidError) -> EffvidError:
    """``err`` if it survives pickling as itself (a worker sends it to the main process), else an
    EffvidError with the same message."""
    try:
        copy = pickle.loads(pickle.dumps(err))
    except Exception:  # a subclass whose constructor does not take its message back
        return EffvidError(str(err))
    return err if type(copy) is type(err) and str(copy) == str(err) else EffvidError(str(err))


def _collate(items: list[Any]) -> Any:
    """``default_collate``, except that a batch holding a user error is that error."""
    for item in items:
        if isinstance(item, _UserError):
            return item
    return default_collate(items)


class VideoLoader(DataLoader):
    """A DataLoader whose :meth:`set_epoch` reaches both its sampler and its dataset, and whose
    iteration raises a user error from a worker as the original exception."""

    def set_epoch(self, epoch: int) -> None:
        """Call before iterating epoch ``epoch``: reshuffles the shard and redraws the clips."""
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        dataset = self.dataset.wrapped if isinstance(self.dataset, _CatchUserErrors) else self.dataset
        return _batches(super().__iter__(), getattr(dataset, "note_failed", None))


def _batches(batches: Iterator[Any], note: Any) -> Iterator[Any]:
    """``batches``, raising a :class:`_UserError` as its exception and noting failed videos."""
    for batch in batches:
        if isinstance(batch, _UserError):
            error = batch.error
            # The traceback keeps this frame: it must not keep the workers' iterator alive, or a
            # caller that holds the exception leaves it to the garbage collector, and a collected
            # iterator waits 5 s per worker before it kills them.
            del batch, batches, note
            try:
                raise error
            finally:
                del error
        if note is not None and isinstance(batch, dict) and "failed_videos" in batch:
            note(batch["failed_videos"])
        yield batch


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's global generators from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int,
    drop_last: bool,
    distributed: bool | None = None,
) -> VideoLoader:
    """A DataLoader over ``dataset``, deterministic per epoch (call ``loader.set_epoch(e)``).

    Ordering comes from a DistributedSampler: under DDP (``distributed=True``, or ``None`` with
    an initialised process group) each rank gets its disjoint shard, padded to equal length
    unless ``drop_last``; otherwise one replica holds everything. The shuffle order depends only
    on ``(seed, epoch)``. Workers are seeded from ``seed`` and the rank, and persist across
    epochs when ``num_workers > 0``. An :class:`EffvidError` raised while loading an item is
    raised by the iteration as itself, with 0 workers or many; ``loader.dataset`` forwards every
    attribute to ``dataset``.
    """
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=seed, drop_last=drop_last)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, sampler.rank]).generate_state(1)[0]))
    return VideoLoader(
        _CatchUserErrors(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=_collate,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
