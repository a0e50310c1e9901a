"""Scanning a dataset for unreadable videos (``effvid data check``).

Every video of an annotation is opened and its first and last frames are decoded, so missing,
empty, truncated, corrupt and undecodable files are all found; readable videos feed summaries of
frame count, frame rate, duration and size. A tqdm bar counts the videos checked when asked
(``progress``; None: when stderr is a terminal).
"""

from __future__ import annotations

import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm import tqdm

from effvid.data.annotations import Annotation
from effvid.data.decode import VideoInfo, open_video
from effvid.errors import ConfigError, VideoError

SUMMARY_FIELDS: tuple[str, ...] = ("num_frames", "fps", "duration", "width", "height")


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_dataset`.

    ``problems`` lists ``{"path", "reason"}`` for each unreadable video in annotation order;
    ``summaries`` maps each of :data:`SUMMARY_FIELDS` to ``{"min", "median", "max"}`` over the
    readable videos (``None`` when no video is readable).
    """

    total: int
    ok: int
    bad: int
    backend: str
    problems: list[dict[str, str]] = field(default_factory=list)
    summaries: dict[str, dict[str, float] | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` output of ``effvid data check``)."""
        return asdict(self)


def check_video(
    path: str,
    *,
    backend: str = "pyav",
    num_frames: int | None = None,
    frame_template: str = "img_{:05d}.jpg",
) -> VideoInfo:
    """Open ``path`` and decode its first and last frames; raises VideoError when it cannot."""
    with open_video(path, backend, threads=1, num_frames=num_frames, frame_template=frame_template) as reader:
        info = reader.info
        reader.get_frames([0, info.num_frames - 1])
    return info


def check_dataset(
    annotation: Annotation,
    *,
    backend: str = "pyav",
    workers: int | None = None,
    frame_template: str = "img_{:05d}.jpg",
    progress: bool | None = False,
) -> CheckReport:
    """Check every distinct video path of ``annotation`` with ``workers`` threads (default: CPU count).

    Decoders release the GIL while they work, so threads scan files in parallel. ``progress``
    shows a tqdm bar on stderr (None: only when stderr is a terminal).
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    records = {}
    for record in annotation.records:
        records.setdefault(record.path, record.num_frames)

    def check(item: tuple[str, int | None]) -> VideoInfo | VideoError:
        path, num_frames = item
        try:
            return check_video(path, backend=backend, num_frames=num_frames, frame_template=frame_template)
        except VideoError as err:
            return err

    show = sys.stderr.isatty() if progress is None else bool(progress)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(records), desc="check", unit="video", leave=False, dynamic_ncols=True,
                 disable=not show) as bar:
        results = []
        for result in pool.map(check, records.items()):
            results.append(result)
            bar.update(1)
    infos = [result for result in results if isinstance(result, VideoInfo)]
    problems = [{"path": err.path, "reason": err.reason} for err in results if isinstance(err, VideoError)]
    return CheckReport(
        total=len(results),
        ok=len(infos),
        bad=len(problems),
        backend=backend,
        problems=problems,
        summaries={name: _summary([getattr(info, name) for info in infos]) for name in SUMMARY_FIELDS},
    )


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}
