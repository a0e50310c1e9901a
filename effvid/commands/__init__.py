"""One module per ``effvid`` subcommand, each with ``register(subparsers)`` and ``run(args)``.

``register`` adds the parser and sets ``run`` as its default ``run`` attribute; ``run`` returns
the process exit status. Output that a script may read goes through :func:`print_json`.
"""

from __future__ import annotations

import json
import sys
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
