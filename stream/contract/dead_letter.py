"""Dead letters: what is kept of an input that failed the event contract, and the one
way every driver reads a JSONL file of inputs.

The worker (``clickstream.dlq`` topic), the offline commands (``--dead-letter FILE``),
``validate`` and ``replay --to-kafka`` all write the same record, built here.

>>> from intentstream.stream.contract.events import parse_event
>>> dead_letter_record(b"oops", parse_event(b"oops"), "clickstream:0:7")["reason"]
'not_json'
>>> dead_letter_record(b"\\xff", parse_event(b"\\xff"), "f.jsonl:3")["raw_encoding"]
'base64'
"""

from __future__ import annotations

import base64
from typing import BinaryIO, Iterator

from intentstream.stream.contract.events import Rejection


def dead_letter_record(raw: bytes, rejection: Rejection, source: str) -> dict:
    """``{reason, detail, source, raw, raw_encoding}``: enough to replay the input;
    ``raw`` is the UTF-8 text, or base64 when the bytes were not UTF-8."""
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {"reason": rejection.reason, "detail": rejection.detail, "source": source, "raw": text, "raw_encoding": encoding}


def iter_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes without the newline) for each non-blank line, streaming."""
    for lineno, line in enumerate(fh, 1):
        raw = line.rstrip(b"\r\n")
        if raw.strip():
            yield lineno, raw
