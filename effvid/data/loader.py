"""The DataLoader of effvid's datasets: deterministic per epoch, seeded workers, and user errors
that reach the caller as themselves.

:func:`build_loader` orders items with a DistributedSampler (each DDP rank its own shard), seeds
every worker from the run's seed and rank, and keeps workers across epochs. An
:class:`~effvid.errors.EffvidError` raised while a worker loads an item (an unreadable video under
``on_error="raise"``, nothing readable under ``"skip"``) is carried back as data and raised in the
caller as the original exception, same type and message, for any number of workers (torch would
rebuild it from its traceback text, or as a RuntimeError). Bugs keep torch's behaviour.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate, get_worker_info

from effvid.errors import EffvidError


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
    attribute to ``dataset``. A dataset with a memory cache (``fill_cache``) is filled here
    first when ``num_workers > 0``, so the workers share this process's copy (module docstring).
    """
    fill = getattr(dataset, "fill_cache", None)
    if num_workers > 0 and callable(fill):
        fill(threads=num_workers)
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
