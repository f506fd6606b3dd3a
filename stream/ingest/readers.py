"""Source files as records: ``(line number, raw bytes, record or Rejection)``, streaming.

* **CSV** (:func:`csv_records`): a row becomes a dict by column name — the header row's
  names, or the mapping's ``columns``. A row with another number of columns is a
  ``bad_row`` rejection; blank lines are skipped. The header is read (and checked
  against the columns the mapping uses) when the reader is made, so a wrong file fails
  before anything is written. Quoted fields may span lines; ``raw`` is then the row's
  lines joined.
* **JSONL** (:func:`jsonl_records`): a line becomes its decoded object; not JSON or not
  an object is a ``not_json`` / ``not_object`` rejection, as in the event contract.

Bytes that are not UTF-8 are read as U+FFFD in CSV fields; ``raw`` keeps them as they were.

>>> import io
>>> from intentstream.stream.ingest.presets import load_mapping
>>> rows = csv_records(io.BytesIO(b"1,2,3,pv,1511544070\\n\\n1,2,pv\\n"), load_mapping("taobao"))
>>> [(n, rec if isinstance(rec, dict) else rec.reason) for n, _, rec in rows]
[(1, {'user_id': '1', 'item_id': '2', 'category_id': '3', 'behavior': 'pv', 'timestamp': '1511544070'}), (3, 'bad_row')]
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any, BinaryIO

from intentstream.stream import codec
from intentstream.stream.contract.dead_letter import iter_lines
from intentstream.stream.contract.events import Rejection
from intentstream.stream.ingest.mapping import BAD_ROW, Mapping, MappingError

Record = tuple[int, bytes, "dict[str, Any] | Rejection"]


def records(fh: BinaryIO, mapping: Mapping, name: str = "-") -> Iterator[Record]:
    """The records of ``fh`` read as ``mapping.reader`` says; ``name`` is for error messages."""
    if mapping.reader == "csv":
        return csv_records(fh, mapping, name)
    return jsonl_records(fh)


def jsonl_records(fh: BinaryIO) -> Iterator[Record]:
    for lineno, raw in iter_lines(fh):
        try:
            obj = codec.loads(raw)
        except codec.JSONDecodeError as exc:
            yield lineno, raw, Rejection("not_json", str(exc)[:200])
            continue
        yield lineno, raw, obj if type(obj) is dict else Rejection("not_object", type(obj).__name__)


def csv_records(fh: BinaryIO, mapping: Mapping, name: str = "-") -> Iterator[Record]:
    """See the module docstring; :class:`MappingError` at once if the header lacks a column the mapping reads."""
    lines: list[tuple[int, bytes]] = []  # the source lines of the row being parsed
    rows = csv.reader(_text_lines(fh, lines), delimiter=mapping.delimiter)
    columns = mapping.columns
    if mapping.header:
        header = next(rows, None)
        if header is None:
            raise MappingError(f"{name} is empty: no header row")
        if header and header[0].startswith("\ufeff"):  # a byte-order mark
            header[0] = header[0][1:]
        columns = tuple(h.strip() for h in header)
        lines.clear()
    absent = sorted(mapping.source_columns() - set(columns))
    if absent:
        raise MappingError(f"{name}: no column {', '.join(map(repr, absent))} (the columns are {', '.join(columns)})")
    return _csv_rows(rows, columns, lines)


def _csv_rows(rows: Iterator[list[str]], columns: tuple[str, ...], lines: list[tuple[int, bytes]]) -> Iterator[Record]:
    width = len(columns)
    for row in rows:
        lineno = lines[0][0]
        raw = lines[0][1] if len(lines) == 1 else b"\n".join(line for _, line in lines)
        lines.clear()
        if not row:
            continue  # a blank line
        if len(row) != width:
            yield lineno, raw, Rejection(BAD_ROW, f"{len(row)} columns, expected {width}")
            continue
        yield lineno, raw, dict(zip(columns, row))


def _text_lines(fh: BinaryIO, lines: list[tuple[int, bytes]]) -> Iterator[str]:
    """The lines of ``fh`` as text for the csv module, each also noted in ``lines``."""
    for lineno, line in enumerate(fh, 1):
        lines.append((lineno, line.rstrip(b"\r\n")))
        yield line.decode("utf-8", "replace")
