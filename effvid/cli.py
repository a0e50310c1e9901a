"""The ``effvid`` console entry point.

Each subcommand lives in its own module under :mod:`effvid.commands` with ``register``
(adds its argparse parser) and ``run`` (does the work and returns the exit status). Modules
keep heavy imports inside ``run`` so that ``effvid --help`` stays fast.

Every mistake a user can make ends the same way: one line ``effvid: error: <message>`` on
stderr and exit status 2 (a bad argument included: :class:`ArgumentParser` raises
:class:`UsageError` instead of printing argparse's usage block). With ``--json`` the same
message also goes to stdout as one JSON object ``{"error": <message>, "exit": 2}``; an
interrupt (Ctrl-C) exits 130 and a SIGTERM that a command turned into ``SystemExit(143)``
exits 143, reported the same way.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from effvid import __version__
from effvid.errors import EffvidError

# Subcommand name -> module under effvid.commands. Order is the order of `effvid --help`.
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "data": "data",
    "models": "models",
    "flops": "flops",
    "bench": "bench",
    "export": "export",
    "train": "train",
    "eval": "eval",
    "predict": "predict",
    "demo": "demo",
    "shrink": "shrink",
    "analyze": "analyze",
}


EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, the status a shell reports for a process SIGTERM ended


class UsageError(EffvidError):
    """A command-line argument argparse refused (unknown option, missing or invalid value)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line: :meth:`error` raises :class:`UsageError` naming the
    subcommand and the option, instead of printing the usage block and exiting.

    ``add_subparsers`` creates its parsers with the class of the parser it is called on, so
    every subcommand (``effvid data check`` included) inherits this behaviour.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the deepest subparser's default wins, so after parsing this names the subcommand that ran
        self.set_defaults(_parser_prog=self.prog)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse finds these at the top level; name the subcommand they were given to
            _usage_error(getattr(parsed, "_parser_prog", self.prog), f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        _usage_error(self.prog, message)


def _usage_error(prog: str, message: str) -> NoReturn:
    command = prog.removeprefix("effvid").strip()
    raise UsageError(f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per entry of :data:`COMMANDS`."""
    parser = ArgumentParser(
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
    """Run one subcommand and return its exit status.

    A user error (argument, config, data, checkpoint) prints one line on stderr and returns 2;
    an interrupt returns 130, a SIGTERM turned into ``SystemExit(143)`` returns 143. With
    ``--json`` each of them also prints ``{"error": <message>, "exit": <status>}`` on stdout.
    """
    install_log_handler()
    argv = list(sys.argv[1:] if argv is None else argv)
    options = argv[: argv.index("--")] if "--" in argv else argv
    as_json = "--json" in options  # until the arguments are parsed (an argument error has no args)
    try:
        args = build_parser().parse_args(argv)
        as_json = bool(getattr(args, "json", False))
        return int(args.run(args) or 0)
    except EffvidError as err:
        return _fail(one_line(str(err)), EXIT_USAGE, as_json)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, as_json, prefix="effvid: ")
    except SystemExit as exc:
        if exc.code != EXIT_TERMINATED:
            raise
        return _fail("terminated (SIGTERM)", EXIT_TERMINATED, as_json, prefix="effvid: ")


def one_line(message: str) -> str:
    """``message`` with its line breaks folded into spaces (the CLI prints errors as one line)."""
    return re.sub(r"\s*[\r\n]+\s*", " ", message.strip()) or "error"


def _fail(message: str, status: int, as_json: bool, *, prefix: str = "effvid: error: ") -> int:
    print(f"{prefix}{message}", file=sys.stderr)
    if as_json:
        json.dump({"error": message, "exit": status}, sys.stdout)
        sys.stdout.write("\n")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
