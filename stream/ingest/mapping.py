"""A mapping table, compiled: one source record (a CSV row by column name, or a decoded
JSON object) to one contract :class:`~intentstream.stream.contract.events.Event`.

The keys of a table are documented in ``config/imports.toml``. Applying it never raises
on bad input: :meth:`Mapping.event` returns an Event, or a
:class:`~intentstream.stream.contract.events.Rejection` — one of the contract's reason
codes (the event is checked by the contract's own
:func:`~intentstream.stream.contract.events.validate_event`), ``bad_row`` (a CSV row with
the wrong number of columns, from the reader), or :data:`SKIPPED` for a row of a type the
mapping does not carry (its detail is the source type). A mistake in the table itself is
a :class:`MappingError`, raised when it is compiled.

Ids: a record without an ``event_id`` gets :func:`row_id`, a hash of its source bytes,
so importing the same file twice gives the same ids (the engine deduplicates by id).

>>> m = Mapping.compile({"reader": "csv", "columns": ["u", "t", "what"], "time": {"format": "epoch_s"},
...                      "fields": {"user_id": "u", "ts": "t", "type": "what"}, "types": {"Add To Cart": "add_to_cart"}})
>>> ev = m.event({"u": "7", "t": "1511544070", "what": "add-to-cart"}, b"7,1511544070,add-to-cart")
>>> ev.user_id, ev.ts_ms, ev.type, ev.event_id
('7', 1511544070000, 'add_to_cart', '52b1dada0648392fd5a0')
>>> m.event({"u": "7", "t": "1511544070", "what": "fav"}, b"...")
Rejection(reason='skipped_type', detail='fav')
>>> m.event({"u": "7", "t": "soon", "what": "add_to_cart"}, b"...").reason
'bad_ts'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Final

from intentstream.stream.contract.events import MIN_TS_MS, CANONICAL_TYPES, Event, Rejection, is_known_zone, validate_event, zone

#: The reason of a record whose type the mapping does not carry: counted, not dead-lettered.
SKIPPED: Final = "skipped_type"
#: The reason of a CSV row with the wrong number of columns (the contract's reasons cover the rest).
BAD_ROW: Final = "bad_row"

READERS: Final = ("csv", "jsonl")
TIME_FORMATS: Final = ("iso", "epoch_s", "epoch_ms")  # or a strptime pattern
#: Contract fields a mapping may fill (``props`` has a table of its own).
FIELDS: Final = ("event_id", "user_id", "ts", "type", "page", "category", "item_id", "amount",
                 "currency", "device", "channel", "tz")  # fmt: skip
REQUIRED: Final = ("user_id", "ts", "type")
_KEYS: Final = frozenset({"reader", "header", "columns", "delimiter", "fields", "time", "types", "constants", "props"})
#: Distinct source type spellings remembered with their contract type (a bound on a
#: column of free text).
_TYPE_CACHE_MAX: Final = 10_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WORDS = re.compile(r"[a-z0-9]+")

Source = tuple[str, ...]  # a column name (one element) or the keys of a JSON path


class MappingError(ValueError):
    """A mapping table (a preset overlaid with a file) that cannot work; the message says why."""


def type_key(name: str) -> str:
    """The spelling-free form source types are matched by.

    >>> type_key("Order Completed") == type_key("order_completed") == type_key(" ORDER-completed")
    True
    """
    return " ".join(_WORDS.findall(name.lower()))


def row_id(raw: bytes) -> str:
    """The event id of a source row that has none: 20 hex digits of its BLAKE2b hash."""
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


def epoch_ms(dt: datetime) -> int:
    """An aware datetime in epoch ms, in integer arithmetic (exact, unlike ``timestamp()``)."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class Mapping:
    """A compiled mapping table (see the module docstring); build it with :meth:`compile`."""

    reader: str
    header: bool
    columns: tuple[str, ...]
    delimiter: str
    fields: tuple[tuple[str, tuple[Source, ...]], ...]  # (contract field, candidate sources)
    props: tuple[tuple[str, tuple[Source, ...]], ...]
    constants: tuple[tuple[str, Any], ...]
    types: dict[str, str]  # type_key(source type) -> contract type ("" = dropped on purpose)
    time_format: str
    timezone: str
    _seen_types: dict[str, str]  # source spelling -> contract type, memo of _contract_type

    @classmethod
    def compile(cls, table: dict[str, Any]) -> Mapping:
        """Check and compile a mapping table (defaults already merged in); MappingError if wrong."""
        unknown = set(table) - _KEYS
        if unknown:
            raise MappingError(f"unknown key(s) {sorted(unknown)}; a mapping has {sorted(_KEYS)}")
        reader = table.get("reader")
        if reader not in READERS:
            raise MappingError(f"reader must be one of {', '.join(READERS)}, not {reader!r}")
        header = table.get("header", True)
        columns = table.get("columns", [])
        delimiter = table.get("delimiter", ",")
        if not isinstance(header, bool):
            raise MappingError("header must be true or false")
        if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
            raise MappingError("columns must be a list of column names")
        if reader == "csv" and not header and not columns:
            raise MappingError("a csv mapping without a header row needs columns = [...]")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise MappingError(f"delimiter must be one character, not {delimiter!r}")

        fields = _table(table, "fields")
        bad = sorted(set(fields) - set(FIELDS))
        if bad:
            raise MappingError(f"[fields] {', '.join(bad)}: not contract fields (they are {', '.join(FIELDS)}; others go in [props])")
        missing = [f for f in REQUIRED if f not in fields]
        if missing:
            raise MappingError(f"[fields] must name the source of {', '.join(missing)}")
        constants = _table(table, "constants")
        bad = sorted((set(constants) - set(FIELDS) - {"props"}) | (set(constants) & {"event_id", "ts", "type"}))
        if bad:
            raise MappingError(f"[constants] {', '.join(bad)}: not a contract field a constant can fill")
        checked = validate_event({"event_id": "-", "user_id": "-", "ts": MIN_TS_MS, "type": "click", **constants})
        if type(checked) is Rejection:
            raise MappingError(f"[constants]: {checked.reason} ({checked.detail})")

        time = _table(table, "time")
        fmt, tz = time.get("format", "iso"), time.get("timezone", "UTC")
        if not isinstance(fmt, str) or (fmt not in TIME_FORMATS and "%" not in fmt):
            raise MappingError(f"[time] format must be {', '.join(TIME_FORMATS)} or a strptime pattern, not {fmt!r}")
        if not isinstance(tz, str) or not is_known_zone(tz):
            raise MappingError(f"[time] timezone {tz!r} is not a known IANA zone")

        types: dict[str, str] = {}
        for source, target in _table(table, "types").items():
            if not isinstance(target, str) or (target and target not in CANONICAL_TYPES):
                raise MappingError(f"[types] {source!r} = {target!r}: not a contract event type (or \"\" to drop it)")
            types[type_key(source)] = target
        if not types:
            raise MappingError("[types] is empty: no source type would become an event")

        split = reader == "jsonl"
        order = ("type", *FIELDS)  # the type first: a row of a dropped type is only counted
        return cls(
            reader, header, tuple(columns), delimiter,
            tuple((name, _sources(f"[fields] {name}", fields[name], split)) for name in dict.fromkeys(order) if name in fields),
            tuple((name, _sources(f"[props] {name}", spec, split)) for name, spec in _table(table, "props").items()),
            tuple(constants.items()), types, fmt, tz, {},
        )  # fmt: skip

    def source_columns(self) -> set[str]:
        """Every column the mapping reads (a CSV header must have them)."""
        return {src[0] for _, sources in self.fields + self.props for src in sources}

    def event(self, record: dict[str, Any], raw: bytes) -> Event | Rejection:
        """The contract event of one source record (``raw``: its bytes, for the id hash)."""
        out: dict[str, Any] = dict(self.constants)
        props: dict[str, Any] = {}
        for name, sources in self.fields:
            value = _first(record, sources)
            if value is None:
                if name in REQUIRED:
                    return Rejection("missing_field", f"{name} (from {', '.join('.'.join(path) for path in sources)})")
                continue
            if name == "type":
                typ = self._contract_type(value)
                if not typ:
                    return Rejection(SKIPPED, _text(value))
                value = typ
            elif name == "ts":
                value = parse_time(value, self.time_format, self.timezone)
                if type(value) is Rejection:
                    return value
            elif name == "amount":
                value = _number(value)
                if value is None:
                    return Rejection("bad_amount", repr(_first(record, sources))[:50])
            else:
                value = _scalar_text(value)
                if value is None:
                    return Rejection("bad_field_type", name)
            out[name] = value
        for name, sources in self.props:
            value = _first(record, sources)
            if value is not None:
                props[name] = value
        if props:
            out["props"] = {**out["props"], **props} if "props" in out else props
        if "event_id" not in out:
            out["event_id"] = row_id(raw)
        return validate_event(out)

    def _contract_type(self, value: Any) -> str:
        name = value if type(value) is str else _text(value)
        typ = self._seen_types.get(name)
        if typ is None:
            typ = self.types.get(type_key(name), "")
            if len(self._seen_types) < _TYPE_CACHE_MAX:
                self._seen_types[name] = typ
        return typ


def parse_time(value: Any, fmt: str, tz: str) -> int | Rejection:
    """A source time in epoch ms (range checked later, by the contract); ``tz`` is the zone
    of times written without an offset.

    >>> parse_time("2019-10-01 00:00:00 UTC", "%Y-%m-%d %H:%M:%S UTC", "UTC"), parse_time(1511544070, "epoch_s", "UTC")
    (1569888000000, 1511544070000)
    >>> parse_time("2026-01-05T18:00:00", "iso", "Asia/Shanghai") == parse_time("2026-01-05T10:00:00Z", "iso", "UTC")
    True
    """
    if fmt == "epoch_s" or fmt == "epoch_ms":
        scale = 1000 if fmt == "epoch_s" else 1
        if type(value) is int:
            return value * scale
        if type(value) is str:
            try:
                return int(value) * scale
            except ValueError:
                pass
        number = _number(value)
        if number is None:
            return Rejection("bad_ts", f"not {fmt}: {_text(value)[:40]}")
        return round(number * scale)
    if type(value) is not str:
        return Rejection("bad_ts", f"{type(value).__name__} {_text(value)[:40]}")
    if fmt == "iso":
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return Rejection("bad_ts", value[:50])
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone(tz))
        return epoch_ms(dt)
    return _pattern_ms(value, fmt, tz)


@lru_cache(maxsize=4096)
def _pattern_ms(value: str, fmt: str, tz: str) -> int | Rejection:
    # cached: exports in time order repeat the same second many times, and strptime is slow
    try:
        dt = datetime.strptime(value, fmt)
    except ValueError:
        return Rejection("bad_ts", f"not {fmt}: {value[:40]}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return epoch_ms(dt)


def _table(table: dict[str, Any], key: str) -> dict[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise MappingError(f"[{key}] must be a table")
    return value


def _sources(where: str, spec: Any, split: bool) -> tuple[Source, ...]:
    specs = spec if isinstance(spec, list) else [spec]
    if not specs or not all(isinstance(s, str) and s for s in specs):
        raise MappingError(f"{where}: expected a source name or a list of them, not {spec!r}")
    return tuple(tuple(s.split(".")) if split else (s,) for s in specs)


def _first(record: dict[str, Any], sources: tuple[Source, ...]) -> Any:
    """The first source value present and not empty (None if there is none)."""
    for path in sources:
        value: Any = record
        for key in path:
            if type(value) is not dict:
                value = None
                break
            value = value.get(key)
        if value is not None and value != "":
            return value
    return None


def _scalar_text(value: Any) -> str | None:
    """A source value as a contract string: strings as they are, numbers written out."""
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    return None


def _number(value: Any) -> float | None:
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    return value if type(value) is str else str(value)
