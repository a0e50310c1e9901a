"""The run folder: checked before anything runs, held by one run at a time, kept clean.

* :func:`check_run_dir` refuses, in one line, a ``run_dir`` that is a file, lies below a file,
  or cannot be written, before any data is read or any model is built.
* :func:`run_lock` holds an exclusive ``flock`` on ``RUN_DIR/.lock`` for the whole run, so a
  second run on the same folder stops with one line naming the process that holds it. The
  kernel releases the lock when its process dies, however it dies, so a lock left by a killed
  run is simply taken over (and said so).
* :func:`remove_stale_temp_files` deletes the temporary files of atomic writes that a killed
  run left behind (``.<name>.tmp<pid>...``, see :mod:`effvid.io`).
* :func:`config_changes` lists the settings a resumed run would change against the config the
  checkpoint was trained with; the trainer refuses them unless ``resume: force``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from effvid.config import flatten
from effvid.errors import ConfigError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"

RESUME_MAY_CHANGE = frozenset({"run_dir", "resume", "device", "log_every", "log", "data.num_workers",
                               "data.val_batch_size"})
"""Settings a resumed run may change: where and how fast it runs, not what it computes."""


def check_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` if needed; a :class:`ConfigError` naming it when it cannot hold a run."""
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == run_dir else f"lies below {parent}, which is a file"
            raise ConfigError(f"run_dir {run_dir}: {what}; choose a folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as exc:
        raise ConfigError(f"run_dir {run_dir}: cannot write there ({exc.strerror or type(exc).__name__})") from None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[str | None]:
    """Hold ``run_dir``'s lock while the block runs; a second holder is a :class:`ConfigError`.

    Yields who held the lock before without releasing it, a process that died (``"process N on
    HOST (started ...)"``), or ``None``. A holder that finishes empties the file before unlocking.
    """
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise ConfigError(f"run_dir {run_dir}: in use by {holder}; wait for it to finish, stop it, or choose "
                              "another run_dir") from None
        previous = _read_holder(path)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        try:
            yield _describe(previous) if previous else None
        finally:
            os.ftruncate(fd, 0)  # released cleanly: a holder left in the file died without releasing
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(holder: Mapping[str, Any]) -> str:
    return f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"


def _holder(path: Path) -> str:
    holder = _read_holder(path)
    return _describe(holder) if holder else "another process"


def remove_stale_temp_files(run_dir: Path) -> int:
    """Delete the atomic-write temporaries a killed run left in ``run_dir`` and its ``checkpoints``
    folder (call it holding the run's lock: then no live process owns them); returns how many."""
    removed, size = 0, 0
    for path in (*run_dir.glob(".*.tmp*"), *(run_dir / "checkpoints").glob(".*.tmp*")):
        if not path.is_file():
            continue
        size += path.stat().st_size
        path.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info(f"run_dir {run_dir}: removed {removed} temporary file(s) ({size / 1e6:.1f} MB) left by an "
                    "interrupted run")
    return removed


def config_changes(recorded: Mapping[str, Any], current: Mapping[str, Any], *,
                   defaults: Mapping[str, Any] | None = None) -> list[str]:
    """``key (old -> new)`` for every setting (dotted key) that differs, outside :data:`RESUME_MAY_CHANGE`.

    A key missing from ``recorded`` (a config recorded before the key existed) counts as its
    entry in ``defaults`` (dotted keys, e.g. :func:`field_defaults` of the current config), so a
    new option left at its default is no change; a key missing elsewhere counts as ``None``.
    """
    old, new = flatten(recorded), flatten(current)
    defaults = defaults or {}
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in RESUME_MAY_CHANGE or any(key.startswith(k + ".") for k in RESUME_MAY_CHANGE):
            continue
        before = old[key] if key in old else defaults.get(key)
        if before != new.get(key):
            changes.append(f"{key} ({before!r} -> {new.get(key)!r})")
    return changes


def field_defaults(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """The declared defaults of ``cfg``'s fields and of the config dataclasses nested in it, by dotted key."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(field_defaults(value, f"{prefix}{f.name}."))
        elif f.default is not dataclasses.MISSING:
            out[prefix + f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[prefix + f.name] = f.default_factory()
    return out

