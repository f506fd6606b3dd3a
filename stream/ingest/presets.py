"""The built-in mapping tables (``config/imports.toml``) and a user's mapping file laid
over one: what ``intentstream import --format F [--mapping FILE.toml]`` runs with.

Every mapping starts from the file's ``[defaults]`` table (the one place its defaults
live); a preset's table comes next, then the user's file. Tables (``fields``, ``types``,
``props``, ``constants``, ``time``) merge entry by entry; other keys are replaced.

>>> sorted(PRESETS)
['rees46', 'retailrocket', 'segment', 'taobao']
>>> load_mapping("taobao").time_format, load_mapping("segment").reader
('epoch_s', 'jsonl')
>>> load_mapping("csv")
Traceback (most recent call last):
...
intentstream.stream.ingest.mapping.MappingError: --format csv needs --mapping FILE.toml (the keys are described in config/imports.toml)
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from typing import Any, Final

from intentstream.stream.ingest.mapping import READERS, Mapping, MappingError
from intentstream.stream.settings import CONFIG_DIR

IMPORTS_FILE: Final = CONFIG_DIR / "imports.toml"
PRESETS: Final = ("segment", "taobao", "rees46", "retailrocket")
#: Every value of ``--format``: the presets, then the generic readers (which need a mapping file).
FORMATS: Final = PRESETS + READERS


@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    with open(IMPORTS_FILE, "rb") as fh:
        return tomllib.load(fh)


def preset_table(name: str) -> dict[str, Any]:
    """A preset's table with the defaults merged in (a new dict: the caller may change it)."""
    tables = _tables()
    return merged(merged({}, tables["defaults"]), tables[name])


def load_mapping(fmt: str, path: str | None = None) -> Mapping:
    """The compiled mapping of ``--format fmt`` with ``--mapping path`` (None: no file);
    :class:`MappingError` names what is wrong (an unknown format, an unreadable file, a bad key)."""
    if fmt in PRESETS:
        table = preset_table(fmt)
    elif fmt in READERS:
        if path is None:
            raise MappingError(f"--format {fmt} needs --mapping FILE.toml (the keys are described in config/imports.toml)")
        table = merged(merged({}, _tables()["defaults"]), {"reader": fmt})
    else:
        raise MappingError(f"unknown format {fmt!r}; the formats are {', '.join(FORMATS)}")
    if path is not None:
        own = read_mapping_file(path)
        reader = own.get("reader", table["reader"])
        if reader != table["reader"]:
            raise MappingError(f"{path}: reader = {reader!r}, but --format {fmt} reads {table['reader']}")
        table = merged(table, own)
    try:
        return Mapping.compile(table)
    except MappingError as exc:
        raise MappingError(f"{path or 'config/imports.toml'} (--format {fmt}): {exc}") from None


def read_mapping_file(path: str) -> dict[str, Any]:
    """A mapping file's table; :class:`MappingError` when unreadable or not TOML."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise MappingError(f"cannot read mapping {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"mapping {path} is not valid TOML: {exc}") from None


def merged(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``into`` with ``new`` laid over it: tables merge one level deep, other values are replaced.

    >>> merged({"fields": {"a": 1}, "header": True}, {"fields": {"b": 2}, "header": False})
    {'fields': {'a': 1, 'b': 2}, 'header': False}
    """
    for key, value in new.items():
        old = into.get(key)
        into[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return into
