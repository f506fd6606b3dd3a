"""Records of the ``segments`` topic: parsed, validated and learned in the merge's order.

:func:`parse_segment` turns a record value into a segment dict the model can learn, or
raises :class:`MalformedSegment` with a short reason code. :func:`learn_records` learns
released records (:class:`~intentstream.stream.personas.merge.SegmentRecord`, in the
order :class:`~intentstream.stream.personas.merge.PartitionMerger` released them) into a
:class:`~intentstream.stream.personas.service.PersonaService`, counts what it skipped and
advances each partition's next offset: malformed records are skipped, never fatal, and
their offsets still advance.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any

from intentstream.stream import codec
from intentstream.stream.personas.merge import SegmentRecord
from intentstream.stream.personas.service import PersonaService
from intentstream.stream.sessions.segments import IntentSegment

log = logging.getLogger("intentstream.personas")

__all__ = ["MalformedSegment", "learn_records", "parse_segment"]


class MalformedSegment(ValueError):
    """A ``segments`` record that is not a closed intent segment; ``reason`` is a short code:
    ``empty``, ``not_json``, ``not_object``, ``missing_field``, ``bad_field_type`` (the
    writer also counts ``learn_failed``: a valid record the model raised on, logged)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _check_str(v: Any) -> bool:
    return isinstance(v, str)


def _check_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_counts(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _check_float(n) for k, n in v.items())


def _check_any(v: Any) -> bool:
    return True


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": _check_str, "int": _check_int, "float": _check_float, "dict[str, int]": _check_counts,
}  # fmt: skip
#: (field, required, type check) for every field of IntentSegment, from the dataclass itself.
_SEGMENT_FIELDS: tuple[tuple[str, bool, Callable[[Any], bool]], ...] = tuple(
    (f.name, f.default is MISSING and f.default_factory is MISSING, _CHECKS.get(str(f.type), _check_any))
    for f in fields(IntentSegment)
)


def parse_segment(value: bytes | None) -> dict[str, Any]:
    """A ``segments`` record value (``IntentSegment.to_dict()`` JSON) as a dict the model can
    learn, or :class:`MalformedSegment`. Every field :class:`~intentstream.stream.sessions.segments.IntentSegment`
    declares is type-checked (required ones must be present; ``user_id`` non-empty).

    >>> seg = parse_segment(b'{"user_id":"u1","session_id":"s","segment_id":"s:0","seq":0,'
    ...     b'"start_ms":1,"end_ms":2,"duration_min":0.5,"interactions":3,"intent":"coupon",'
    ...     b'"intent_strength":0.7,"urgency":"medium","main_activity":"coupon_oriented",'
    ...     b'"kyc_status":"not_started","transaction_status":"none","behaviour_stage":"exploring",'
    ...     b'"lifecycle_stage":"introduction","type_counts":{"coupon_view":3}}')
    >>> seg["user_id"], seg["interactions"]
    ('u1', 3)
    >>> for bad in (None, b"{", b"[1]", b'{"user_id":"u1"}', codec.dumps({**seg, "amount": "9"})):
    ...     try:
    ...         parse_segment(bad)
    ...     except MalformedSegment as exc:
    ...         print(exc.reason)
    empty
    not_json
    not_object
    missing_field
    bad_field_type
    """
    if not value:
        raise MalformedSegment("empty")
    try:
        d = codec.loads(value)
    except codec.JSONDecodeError as exc:
        raise MalformedSegment("not_json", str(exc)[:80]) from None
    if not isinstance(d, dict):
        raise MalformedSegment("not_object", type(d).__name__)
    for name, required, check in _SEGMENT_FIELDS:
        v = d.get(name)
        if v is None:
            if required:
                raise MalformedSegment("missing_field", name)
            continue
        if not check(v):
            raise MalformedSegment("bad_field_type", name)
    if not d["user_id"]:
        raise MalformedSegment("bad_field_type", "user_id")
    return d


def learn_records(
    service: PersonaService, records: Iterable[SegmentRecord], offsets: dict[int, int], counters: Counter[str]
) -> None:
    """Learn ``records`` in the given order; malformed ones are counted and skipped.

    ``offsets[partition]`` becomes the offset after each record taken; ``counters`` gains
    ``learned``, ``malformed`` and ``malformed.<reason>`` (``learn_failed``: a valid-looking
    record the model raised on, logged; never a crash loop).

    >>> from intentstream.stream.settings import PersonaSettings
    >>> from intentstream.stream.state.memory.personas import MemoryPersonaStore
    >>> from intentstream.stream.synth.segments import synthetic_segments
    >>> seg = next(iter(synthetic_segments(users=1, seed=1)))
    >>> svc, offsets, counters = PersonaService(PersonaSettings.defaults(), MemoryPersonaStore()), {}, Counter()
    >>> learn_records(svc, [SegmentRecord(0, 4, 1, codec.dumps(seg)), SegmentRecord(1, 0, 2, b"{")], offsets, counters)
    >>> offsets, dict(counters)
    ({0: 5, 1: 1}, {'learned': 1, 'malformed': 1, 'malformed.not_json': 1})
    """
    for r in records:
        try:
            seg = parse_segment(r.value)
        except MalformedSegment as exc:
            counters["malformed"] += 1
            counters[f"malformed.{exc.reason}"] += 1
            log.debug("segments %d@%d skipped: %s", r.partition, r.offset, exc)
        else:
            try:
                service.on_segment(seg)
                counters["learned"] += 1
            except Exception:  # a bug on some valid-looking record: never a crash loop
                counters["malformed"] += 1
                counters["malformed.learn_failed"] += 1
                log.exception("segments %d@%d could not be learned; skipped", r.partition, r.offset)
        offsets[r.partition] = r.offset + 1
