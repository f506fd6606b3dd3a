"""Source records to contract JSON lines: the import's one pass over its input.

:func:`convert` maps each record (:mod:`~intentstream.stream.ingest.readers`) with a
:class:`~intentstream.stream.ingest.mapping.Mapping` and yields ``(sequence number,
contract line)`` for every event — the numbering is the input order, what keeps a
stable sort stable. A rejected record is written to ``dead_letter`` as the contract's
dead-letter record (:func:`~intentstream.stream.contract.dead_letter.dead_letter_record`,
source ``file:line``); a record of a type the mapping does not carry is only counted.
:class:`ImportTally` keeps the counts the summary prints.

A line is the event's :meth:`~intentstream.stream.contract.events.Event.to_dict` (``ts``
in ISO-8601 UTC), keys sorted: the same file and mapping give the same bytes.

>>> import io
>>> from intentstream.stream.ingest.presets import load_mapping
>>> from intentstream.stream.ingest.readers import records
>>> src = io.BytesIO(b"1,9,3,pv,1511544070\\n1,9,3,cart,bad\\n2,9,3,fav,1511544000\\n2,9,3,share,1511544000\\n")
>>> tally, dead = ImportTally(), io.BytesIO()
>>> [n for n, line in convert(records(src, load_mapping("taobao")), load_mapping("taobao"), "ub.csv", tally, dead)]
[1, 3]
>>> tally.rows, tally.events, dict(tally.rejected), dict(tally.skipped), len(tally.users)
(4, 2, {'bad_ts': 1}, {'share': 1}, 2)
>>> tally.span()
('2017-11-24T17:20:00.000Z', '2017-11-24T17:21:10.000Z')
>>> codec.loads(dead.getvalue())["source"]
'ub.csv:2'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from intentstream.stream import codec
from intentstream.stream.contract.dead_letter import dead_letter_record
from intentstream.stream.contract.events import MAX_EVENT_BYTES, Event, Rejection, format_ts
from intentstream.stream.ingest.mapping import SKIPPED, Mapping
from intentstream.stream.ingest.readers import Record


@dataclass
class ImportTally:
    """What an import read and made of it."""

    rows: int = 0
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: rows of types the mapping does not carry, by source type
    skipped: Counter[str] = field(default_factory=Counter)
    #: events by contract type
    types: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None

    def span(self) -> tuple[str, str] | None:
        """The first and the last event time (ISO-8601 UTC), None without events."""
        if self.first_ts_ms is None or self.last_ts_ms is None:
            return None
        return format_ts(self.first_ts_ms), format_ts(self.last_ts_ms)

    def to_dict(self) -> dict[str, object]:
        """The counts for ``import --json``: rows read, events imported (by contract type),
        users, time span, rejected rows by reason, dropped rows by source type."""
        span = self.span()
        return {
            "rows": self.rows,
            "events": self.events,
            "types": dict(self.types),
            "users": len(self.users),
            "first_ts": span[0] if span else None,
            "last_ts": span[1] if span else None,
            "rejected": dict(self.rejected),
            "dropped": dict(self.skipped),
        }


def convert(
    records: Iterable[Record], mapping: Mapping, source: str, tally: ImportTally, dead_letter: BinaryIO | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(sequence number, contract line)`` of each event; see the module docstring."""
    for lineno, raw, record in records:
        tally.rows += 1
        result = mapping.event(record, raw) if isinstance(record, dict) else record
        if isinstance(result, Event):
            # a copy: orjson returns each line in a 1 KiB buffer shrunk in place, and keeping
            # hundreds of thousands of those for the sort fragments the heap (10x slower dumps)
            line = bytes(memoryview(codec.dumps(result.to_dict())))
            if len(line) <= MAX_EVENT_BYTES:
                tally.events += 1
                tally.types[result.type] += 1
                tally.users.add(result.user_id)
                ts = result.ts_ms
                if tally.first_ts_ms is None or ts < tally.first_ts_ms:
                    tally.first_ts_ms = ts
                if tally.last_ts_ms is None or ts > tally.last_ts_ms:
                    tally.last_ts_ms = ts
                yield tally.rows, line
                continue
            result = Rejection("too_large", f"the event would be {len(line)} bytes")
        if result.reason == SKIPPED:
            tally.skipped[result.detail] += 1
            continue
        tally.rejected[result.reason] += 1
        if dead_letter is not None:
            dead_letter.write(codec.dumps_line(dead_letter_record(raw, result, f"{source}:{lineno}")))
