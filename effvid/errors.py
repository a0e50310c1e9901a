"""The exception type for errors a user can cause and fix.

Anything raised as :class:`EffvidError` (or a subclass) is printed by the CLI as one line,
without a traceback, and the process exits with status 2. Bugs keep their traceback.
"""

from __future__ import annotations


class EffvidError(Exception):
    """A user-facing error: the message says what went wrong and where (file, key or value)."""


class ConfigError(EffvidError):
    """A configuration file or override is invalid: unknown key, wrong type, bad value."""


class CheckpointError(EffvidError):
    """A checkpoint is missing, corrupt, not ours, or does not fit the model."""


class VideoError(EffvidError):
    """A video (file or frame folder) cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keeps path and reason across DataLoader worker and Ray pickling
        return (type(self), (self.path, self.reason))
