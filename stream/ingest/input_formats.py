"""What the worker reads: ``[events] input_format``.

* ``contract`` (the default): the event contract,
  :func:`~intentstream.stream.contract.events.parse_event` itself — the hot path gains
  nothing, not even a call.
* ``segment``: Segment / RudderStack calls as their SDKs and webhooks send them, one
  JSON object per message, mapped by the ``[segment]`` table of ``config/imports.toml``
  (the preset ``intentstream import --format segment`` uses): :func:`parse_segment`.
  Invalid messages are rejected with the contract's reason codes and dead-lettered as
  usual; a message of a type the table does not carry (``identify``, ``group``, an
  unlisted track event) is a :data:`~intentstream.stream.ingest.mapping.SKIPPED`
  rejection, which the engines count as ``skipped`` and do not dead-letter (it is valid
  input the product has no use for, and would otherwise trip the dead-letter rate alert).

>>> parse = parser_for("segment")
>>> ev = parse(b'{"type":"track","event":"Product Added","userId":"u1","messageId":"m1",'
...            b'"timestamp":"2026-01-05T10:00:00.000Z","properties":{"product_id":"sku9","price":12.5}}')
>>> ev.event_id, ev.type, ev.item_id, ev.amount
('m1', 'add_to_cart', 'sku9', 12.5)
>>> parse(b'{"type":"identify","userId":"u1","timestamp":"2026-01-05T10:00:00Z"}')
Rejection(reason='skipped_type', detail='identify')
>>> parser_for("contract") is parse_event
True
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Final

from intentstream.stream.contract.events import Event, Rejection, decode_message, parse_event
from intentstream.stream.ingest.mapping import Mapping
from intentstream.stream.ingest.presets import load_mapping
from intentstream.stream.settings import SettingsError

INPUT_FORMATS: Final = ("contract", "segment")

Parser = Callable[[bytes | bytearray | memoryview | str], Event | Rejection]


def parser_for(input_format: str) -> Parser:
    """The parser of one input message for ``[events] input_format``."""
    if input_format == "contract":
        return parse_event
    if input_format == "segment":
        return parse_segment
    raise SettingsError(f"[events] input_format must be one of {', '.join(INPUT_FORMATS)}, not {input_format!r}")


@lru_cache(maxsize=1)
def segment_mapping() -> Mapping:
    """The ``[segment]`` preset, compiled once."""
    return load_mapping("segment")


def parse_segment(raw: bytes | bytearray | memoryview | str) -> Event | Rejection:
    """One Segment / RudderStack message to a contract event (never raises on bad input)."""
    obj = decode_message(raw)
    if type(obj) is Rejection:
        return obj
    if type(obj) is not dict:
        return Rejection("not_object", type(obj).__name__)
    return segment_mapping().event(obj, raw.encode() if isinstance(raw, str) else bytes(raw))
