"""What the commands print to a terminal differently: redrawn lines and colour; and how
every command reports a mistake: one line on standard error,
``intentstream COMMAND: MESSAGE``, an exit status and no traceback (:func:`error`)."""

from __future__ import annotations

import os
import sys
from typing import IO, Any

PROG = "intentstream"


def isatty(stream: IO[Any]) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_colour(stream: IO[Any]) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set."""
    return isatty(stream) and not os.environ.get("NO_COLOR")


def error_line(command: str | None, message: object) -> str:
    """``intentstream COMMAND: MESSAGE`` on one line (a message's own line breaks become spaces).

    >>> error_line("import", "unknown format 'x'")
    "intentstream import: unknown format 'x'"
    >>> error_line("intentstream replay", "stopped:\\n  use --sort")
    'intentstream replay: stopped: use --sort'
    >>> error_line("segments", "3 of 9 events late\\n  fix: add --sort")
    'intentstream segments: 3 of 9 events late; fix: add --sort'
    >>> error_line(None, "the following arguments are required: COMMAND")
    'intentstream: the following arguments are required: COMMAND'
    """
    command = (command or "").removeprefix(PROG).strip()
    text = ""
    for line in filter(None, (line.strip() for line in str(message).splitlines())):
        text += ("" if not text else " " if text[-1] in ":;,." else "; ") + line
    return f"{PROG} {command}: {text}" if command else f"{PROG}: {text}"


def error(command: str | None, message: object, status: int = 2) -> int:
    """Print :func:`error_line` on standard error and return ``status``: 2 for a user
    mistake (a missing file, an unknown format, a bad mapping or settings file, options
    that do not go together), 1 for a service that failed (Kafka, Redis)."""
    print(error_line(command, message), file=sys.stderr)
    return status


def os_message(exc: OSError) -> str:
    """A file error as people read it: ``PATH: No such file or directory`` (not ``[Errno 2] ...``)."""
    if exc.filename is None or not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}"
