"""What the commands print to a terminal differently: redrawn lines and colour."""

from __future__ import annotations

import os
from typing import IO, Any


def isatty(stream: IO[Any]) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot tell)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_colour(stream: IO[Any]) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set."""
    return isatty(stream) and not os.environ.get("NO_COLOR")
