"""Files written atomically, and the JSON and safetensors readers that check what they read.

Every file effvid writes that another process (or a resumed run) may read goes through
:func:`atomic_file`: the content is written to a temporary file in the same folder, flushed to
disk, then renamed over the target, so a reader sees the old file or the new one, never part of
one, whatever kills the writer. Readers raise :class:`~effvid.errors.EffvidError` subclasses
that name the file, never a parser's traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from effvid.errors import CheckpointError, EffvidError


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends cleanly it replaces ``path``.

    The caller writes the temporary file in any way it likes (a library that wants a file name,
    such as an encoder, included). On an exception the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically through ``write(binary_file)``."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (a value JSON cannot hold fails before any write)."""
    write_text(path, json.dumps(obj, indent=indent))


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """The JSON value in ``path``; missing or unparsable files raise an :class:`EffvidError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EffvidError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EffvidError(f"{path}: unreadable {what} ({type(exc).__name__})") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


CHECKPOINT_FORMAT = "effvid-checkpoint"
"""The format marker of an effvid checkpoint's sidecar (and of its safetensors metadata)."""

CHECKPOINT_SUFFIXES = (".safetensors", ".state.pt", ".json")
"""The files of one effvid checkpoint: ``<stem>.safetensors`` (weights), ``<stem>.state.pt``
(training state, optional), ``<stem>.json`` (sidecar; present = complete)."""


def checkpoint_stem(path: str | Path) -> Path:
    """The stem of a checkpoint given its stem or any of its three files."""
    path = Path(path)
    for suffix in CHECKPOINT_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def checkpoint_files(stem: Path) -> tuple[Path, Path, Path]:
    """``(weights, training state, sidecar)`` paths of the checkpoint at ``stem``."""
    return tuple(stem.with_name(stem.name + suffix) for suffix in CHECKPOINT_SUFFIXES)  # type: ignore[return-value]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as hex, the checksum checkpoint sidecars record."""
    return hashlib.sha256(data).hexdigest()


def safetensors_bytes(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """``tensors`` serialised as safetensors (contiguous CPU tensors that share no storage)."""
    from safetensors.torch import save

    return save(dict(tensors), metadata=dict(metadata or {}))


def read_safetensors(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """The tensors of the safetensors file ``path``, checked against ``sha256`` when given.

    A missing, unreadable, corrupt or mismatching file is a :class:`CheckpointError` naming it.
    """
    from safetensors.torch import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        raise CheckpointError(f"{path}: weights file missing or unreadable") from None
    if sha256 is not None and sha256_hex(data) != sha256:
        raise CheckpointError(f"{path}: corrupt checkpoint (the weights do not match the sidecar's checksum)")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for bad headers/data
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({type(exc).__name__})") from None
