"""The ``intentstream`` command. Each subcommand lives in its own module, which exposes
``register(subparsers)``; the module registers its parser and sets ``func`` to a
function taking the parsed args and returning an exit status."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
import tomllib
from typing import NoReturn

from intentstream.stream.cli import progress
from intentstream.stream.cli.terminal import error, error_line, os_message
from intentstream.stream.engine.disorder import DisorderError
from intentstream.stream.settings import SettingsError

# Modules that contribute subcommands, in the order they are listed in --help.
COMMAND_MODULES = (
    "intentstream.stream.cli.generate",
    "intentstream.stream.cli.validate",
    "intentstream.stream.cli.importer",
    "intentstream.stream.cli.segments",
    "intentstream.stream.cli.report",
    "intentstream.stream.cli.uplift",
    "intentstream.stream.cli.demo",
    "intentstream.stream.cli.backtest",
    "intentstream.stream.cli.simulate",
    "intentstream.stream.cli.explain",
    "intentstream.agents.commands.topics",
    "intentstream.agents.commands.worker",
    "intentstream.agents.commands.personas",
    "intentstream.agents.commands.replay",
    "intentstream.agents.commands.tail",
    "intentstream.agents.commands.stats",
    "intentstream.agents.commands.resume",
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def share(text: str) -> float:
    """argparse type: a share between 0 and 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1: {text}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse with the commands' one-line errors (:func:`~intentstream.stream.cli.terminal.error`):
    ``intentstream COMMAND: MESSAGE (see intentstream COMMAND --help)``, exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="intentstream",
        description="Kafka-native engine for real-time behavioural marketing triggers.",
    )
    parser.add_argument("--config", help="settings override file (TOML); see config/default.toml")
    no_progress = "no progress bar on standard error (it is only ever drawn on a terminal)"
    parser.add_argument("--no-progress", action="store_true", help=no_progress)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():  # also after the command, where people type it
        command.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help=no_progress)
    return parser


def main(argv: list[str] | None = None) -> int:
    # The engine keeps many small long-lived objects (user states, caches): with the
    # default thresholds the cyclic GC rescans them every few hundred allocations, which
    # measurably slows every event (about 20 % on a 1M-event replay).
    gc.set_threshold(50_000, 20, 100)
    from intentstream.agents.kafka import KafkaAccessError  # no client library: cheap

    args = build_parser().parse_args(argv)
    progress.configure(show=not args.no_progress)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `intentstream ... | head` is not an error
        sys.stderr.close()
        return 0
    # a path given on the command line; input far out of event-time order (what is wrong, how to fix it)
    # ... and settings that do not parse or validate (a config file, an environment variable)
    except (FileNotFoundError, IsADirectoryError, PermissionError, DisorderError, SettingsError, tomllib.TOMLDecodeError) as exc:
        what = "settings: " if isinstance(exc, tomllib.TOMLDecodeError) else ""
        return error(args.command, what + (os_message(exc) if isinstance(exc, OSError) else str(exc)))
    # the brokers refused this user (credentials, ACLs): one line, without the password
    except KafkaAccessError as exc:
        return error(args.command, str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
