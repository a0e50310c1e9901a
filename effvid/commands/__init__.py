"""One module per ``effvid`` subcommand, each with ``register(subparsers)`` and ``run(args)``.

``register`` adds the parser and sets ``run`` as its default ``run`` attribute; ``run`` returns
the process exit status. Output that a script may read goes through :func:`print_json`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any


def print_json(obj: Any) -> None:
    """Print ``obj`` as one JSON object on stdout (the ``--json`` contract)."""
    json.dump(obj, sys.stdout, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def info(message: str) -> None:
    """Human-readable progress or summary text, on stderr so it never mixes with ``--json``."""
    print(message, file=sys.stderr)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer ``>= minimum``; argparse names the option in its error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type=`` for a finite number ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


positive_int = int_at_least(1)
"""Counts that must be at least 1 (batch sizes, workers that do the work, frames, classes, top-k)."""
non_negative_int = int_at_least(0)
"""Counts that may be 0 (DataLoader workers: 0 loads in the main process; seeds)."""
