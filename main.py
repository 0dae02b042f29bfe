"""Ember: the window by default, and a headless command line for scripts, tests and benchmarks.

python main.py                 open the window
python main.py chat "Hello"    stream a reply from the embedded model to stdout
python main.py --help          list the commands

The commands come from the modalities (engines/*/commands.py) and engines/cli.py; this file
builds the parser from them and dispatches.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence

from engines.errors import EmberError


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, each with its own --help."""
    from engines.cli import commands

    listed = commands()
    width = max(len(c.name) for c in listed) + 2
    epilog = "commands:\n  " + f"{'(none)':<{width}}open the window\n  "
    epilog += "\n  ".join(f"{c.name:<{width}}{c.help}" for c in listed)
    parser = argparse.ArgumentParser(
        prog="ember",
        description="Ember, an offline generative-AI studio. Without a command, the window opens.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--self-test", action="store_true", help="the same as the self-test command")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    for command in listed:
        one = sub.add_parser(command.name, help=command.help, description=command.description)
        command.arguments(one)
        one.set_defaults(command=command)
    return parser


def _qt_receiver() -> object | None:
    """The window's bridge for `bench text`, so that tokens are timed where the window receives them."""
    try:
        from desktop.bench_text import QtReceiver
    except ImportError:  # no Qt here: the benchmark times tokens on the queue's event thread
        return None
    return QtReceiver()


def configure_logging() -> None:
    """Log warnings of Ember's own to stderr; llama.cpp's chatter only with EMBER_LOG=DEBUG or INFO."""
    level = getattr(logging, os.environ.get("EMBER_LOG", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level, format="ember: %(name)s: %(message)s")
    logging.getLogger("engines.llama_cpp").setLevel(level if level < logging.WARNING else logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (or the window); return the exit code."""
    configure_logging()
    args = build_parser().parse_args(argv)
    if args.self_test and args.command_name is None:  # what an installed Ember's launcher takes
        args = build_parser().parse_args(["self-test"])
    if args.command_name is None:
        from desktop.platform_check import check_platform, report

        if code := report(check_platform()):  # Qt's own message names nothing a person can act on
            return code
        from desktop.app import run_app

        return run_app(sys.argv[:1])
    from engines.cli import run

    args.receiver = _qt_receiver
    try:
        return int(run(args.command, args))
    except EmberError as exc:
        print(f"ember: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    multiprocessing.freeze_support()  # an installed (frozen) Ember starts its engine processes from itself
    sys.exit(main())
