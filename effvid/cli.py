"""The ``effvid`` console entry point.

Each subcommand lives in its own module under :mod:`effvid.commands` with ``register``
(adds its argparse parser) and ``run`` (does the work and returns the exit status). Modules
keep heavy imports inside ``run`` so that ``effvid --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from effvid import __version__
from effvid.errors import EffvidError

# Subcommand name -> module under effvid.commands. Order is the order of `effvid --help`.
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "data": "data",
    "models": "models",
    "flops": "flops",
    "train": "train",
    "eval": "eval",
    "predict": "predict",
    "demo": "demo",
    "shrink": "shrink",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="effvid", description="Efficient video action recognition toolkit."
    )
    parser.add_argument("--version", action="version", version=f"effvid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"effvid.commands.{module_name}")
        module.register(sub)
    return parser


class _StderrHandler(logging.Handler):
    """Writes each record's message to the current ``sys.stderr`` (looked up per record, so
    redirections made after start-up, such as pytest's capture, are honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stream must not turn a log line into a crash
            self.handleError(record)


def install_log_handler() -> None:
    """Show effvid's INFO (and higher) log records as plain lines on stderr, once per process."""
    logger = logging.getLogger("effvid")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors print one line on stderr and return 2."""
    install_log_handler()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except EffvidError as err:
        print(f"effvid: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("effvid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
