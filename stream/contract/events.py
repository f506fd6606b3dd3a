"""The event contract: parse and validate one clickstream event.

One function, :func:`parse_event`, serves Kafka messages and JSONL lines alike. It
never raises on bad input: it returns either an :class:`Event` or a
:class:`Rejection` carrying a stable reason code (see :data:`REASONS`), so the caller
can count it and send the original bytes to the dead-letter topic or file.

>>> ev = parse_event(b'{"event_id":"e1","user_id":"u1","ts":"2026-01-05T10:00:00Z","type":"add_to_cart","amount":12.5}')
>>> ev.ts_ms, ev.type, ev.amount
(1767607200000, 'add_to_cart', 12.5)
>>> parse_event(b'{"event_id":"e1","user_id":"u1","ts":"yesterday","type":"click"}').reason
'bad_ts'
>>> parse_event(b'[1, 2]').reason
'not_object'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from intentstream.stream import codec

MAX_EVENT_BYTES: Final = 64 * 1024

#: Earliest and latest accepted event times (years 2000 to 2100 inclusive), epoch ms.
MIN_TS_MS: Final = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
MAX_TS_MS: Final = int(datetime(2101, 1, 1, tzinfo=timezone.utc).timestamp() * 1000) - 1

#: The canonical event types, in a fixed order: the sessionizer stores an event's type as
#: its index here (``sessions.segments.TYPE_CODES``), so this list is append only.
CANONICAL_TYPE_ORDER: Final = (
    "page_view", "click", "search", "app_open", "login", "signup",
    "coupon_view", "coupon_claim", "coupon_redeem",
    "add_to_cart", "remove_from_cart", "checkout_start",
    "payment_submit", "payment_success", "payment_fail",
    "kyc_start", "kyc_submit", "kyc_approved", "kyc_rejected",
    "form_start", "form_submit",
    "message_open", "message_click", "message_dismiss", "unsubscribe",
)  # fmt: skip
CANONICAL_TYPES: Final = frozenset(CANONICAL_TYPE_ORDER)

#: Access channels an event may come from.
ACCESS_CHANNELS: Final = frozenset({"app", "web", "mini_program"})
#: Channels the product sends messages through (``props.channel`` of feedback events).
MESSAGE_CHANNELS: Final = frozenset({"push", "sms", "email", "in_app"})
#: Event types whose ``props.channel`` names a message channel.
CHANNEL_PROP_TYPES: Final = frozenset({"message_open", "message_click", "message_dismiss", "unsubscribe"})

#: Every reason code a rejection can carry, with what it means.
REASONS: Final = {
    "too_large": f"message longer than {MAX_EVENT_BYTES} bytes",
    "not_json": "not valid UTF-8 JSON",
    "not_object": "JSON value is not an object",
    "missing_field": "a required field (event_id, user_id, ts, type) is absent or null",
    "bad_field_type": "a field has the wrong JSON type, or a required string is empty",
    "bad_ts": "ts is neither ISO-8601 with an offset nor integer epoch milliseconds",
    "ts_out_of_range": "ts is outside the years 2000-2100",
    "bad_amount": "amount is not a finite number >= 0",
    "bad_channel": "channel is not one of app, web, mini_program",
    "bad_tz": "tz is not a known IANA time zone",
    "bad_message_channel": "props.channel is not one of push, sms, email, in_app",
    # not decided by parse_event: the partition engine, against the partition's progress
    "ts_in_future": "ts is more than [events] max_future_s ahead of its partition's progress (a clock far ahead)",
}

_REQUIRED = ("event_id", "user_id", "ts", "type")
_OPTIONAL_STRINGS = frozenset({"page", "category", "item_id", "currency", "device"})
_OPTIONAL = _OPTIONAL_STRINGS | {"amount", "channel", "tz", "props"}


@dataclass(slots=True)
class Event:
    """A valid clickstream event. ``ts_ms`` is the event time in epoch milliseconds (UTC).

    Treat it as immutable: it is not frozen only because a frozen dataclass costs a
    ``object.__setattr__`` per field to build, on every event of the hot path."""

    event_id: str
    user_id: str
    ts_ms: int
    type: str
    page: str | None = None
    category: str | None = None
    item_id: str | None = None
    amount: float | None = None
    currency: str | None = None
    device: str | None = None
    channel: str | None = None
    tz: str | None = None
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def is_canonical(self) -> bool:
        """False for unknown types, which the engine treats as generic interactions."""
        return self.type in CANONICAL_TYPES

    @property
    def message_channel(self) -> str | None:
        """The message channel a feedback or unsubscribe event refers to, if any."""
        ch = self.props.get("channel") if self.type in CHANNEL_PROP_TYPES else None
        return ch if isinstance(ch, str) else None

    def to_dict(self) -> dict[str, Any]:
        """The event in the contract's JSON form (``ts`` as ISO-8601 UTC), omitting nulls."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "ts": format_ts(self.ts_ms),
            "type": self.type,
        }
        for name in ("page", "category", "item_id", "amount", "currency", "device", "channel", "tz"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.props:
            out["props"] = self.props
        return out


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input was refused; ``detail`` names the field or the parser's complaint."""

    reason: str
    detail: str = ""

    def __bool__(self) -> bool:  # lets callers write ``if not result: ...``
        return False


def decode_message(raw: bytes | bytearray | memoryview | str) -> Any:
    """One serialized message as JSON, or a :class:`Rejection` (too large, not JSON);
    never raises. The first half of :func:`parse_event`, shared by other input formats."""
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection("too_large", f"{len(raw)} bytes")
    try:
        return codec.loads(raw)
    except codec.JSONDecodeError as exc:
        return Rejection("not_json", str(exc)[:200])


def parse_event(raw: bytes | bytearray | memoryview | str) -> Event | Rejection:
    """Parse and validate one serialized event; never raises on bad input."""
    obj = decode_message(raw)
    if type(obj) is Rejection:
        return obj
    return validate_event(obj)


def validate_event(obj: Any) -> Event | Rejection:
    """Validate an already-decoded JSON value against the contract."""
    if not isinstance(obj, dict):
        return Rejection("not_object", type(obj).__name__)
    for name in _REQUIRED:
        if obj.get(name) is None:
            return Rejection("missing_field", name)
    for name in ("event_id", "user_id", "type"):
        value = obj[name]
        if type(value) is not str or not value:
            return Rejection("bad_field_type", name)
    ts = parse_ts(obj["ts"])
    if isinstance(ts, Rejection):
        return ts

    opt: dict[str, Any] = {}
    # visit only the fields present: most events carry a handful of optional fields
    for name, value in obj.items():
        if value is None or name not in _OPTIONAL:
            continue  # required fields were checked above; unknown fields are ignored
        if name in _OPTIONAL_STRINGS:
            if type(value) is not str:
                return Rejection("bad_field_type", name)
        elif name == "amount":
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                return Rejection("bad_amount", repr(value)[:50])
            value = float(value)
        elif name == "channel":
            if type(value) is not str or value not in ACCESS_CHANNELS:
                return Rejection("bad_channel", repr(value)[:50])
        elif name == "tz":
            if type(value) is not str or not is_known_zone(value):
                return Rejection("bad_tz", repr(value)[:50])
        elif name == "props":
            if type(value) is not dict:
                return Rejection("bad_field_type", "props")
            ch = value.get("channel")
            if ch is not None and obj["type"] in CHANNEL_PROP_TYPES and (type(ch) is not str or ch not in MESSAGE_CHANNELS):
                return Rejection("bad_message_channel", repr(ch)[:50])
        opt[name] = value

    return Event(obj["event_id"], obj["user_id"], ts, obj["type"], **opt)


def parse_ts(value: Any) -> int | Rejection:
    """Event time in epoch ms from ISO-8601 (``Z`` or an offset) or integer epoch ms.

    >>> parse_ts("2026-03-01T08:00:00+08:00") == parse_ts("2026-03-01T00:00:00Z") == parse_ts(1772323200000)
    True
    >>> parse_ts("2026-03-01T08:00:00").reason  # no offset: ambiguous, refused
    'bad_ts'
    """
    if type(value) is int:
        ms = value
    elif type(value) is str:
        fast = _utc_millis(value)
        if fast is not None:
            ms = fast
        else:
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                return Rejection("bad_ts", value[:50])
            if dt.tzinfo is None or dt.utcoffset() is None:
                return Rejection("bad_ts", f"no UTC offset: {value[:50]}")
            ms = _epoch_ms(dt)
    else:  # floats, bools, objects: epoch must be an integer count of milliseconds
        return Rejection("bad_ts", f"{type(value).__name__} {str(value)[:40]}")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        return Rejection("ts_out_of_range", str(value)[:50])
    return ms


def record_ts(value: Any) -> int:
    """A time written by :func:`format_ts` (or epoch ms) back to epoch ms, for reading the
    product's own records; a bad one is a ValueError.

    >>> record_ts("2026-01-05T10:00:00.000Z")
    1767607200000
    """
    ts = parse_ts(value)
    if not isinstance(ts, int):
        raise ValueError(f"bad timestamp {value!r}")
    return ts


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_MS: dict[str, int] = {}  # "YYYY-MM-DD" -> epoch ms of its UTC midnight (valid dates only)


def _utc_millis(value: str) -> int | None:
    """The common forms, ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what :func:`format_ts` writes and
    most producers send) and ``YYYY-MM-DDTHH:MM:SSZ``, without ``datetime``: epoch ms, or
    None for any other form (the caller then parses it in full). Same result as the full
    parse for every input it accepts.

    >>> _utc_millis("2026-01-05T10:00:00.000Z"), _utc_millis("2026-01-05T10:00:00Z")
    (1767607200000, 1767607200000)
    >>> _utc_millis("2026-02-30T10:00:00.000Z"), _utc_millis("2026-01-05T24:00:00.000Z"), _utc_millis("2026-01-05T10:00:00+00:00")
    (None, None, None)
    """
    n = len(value)
    if n == 24:
        if value[23] != "Z" or value[19] != ".":
            return None
        frac = value[20:23]
    elif n == 20:
        if value[19] != "Z":
            return None
        frac = "000"
    else:
        return None
    if value[10] != "T" or value[13] != ":" or value[16] != ":":
        return None
    digits = value[11:13] + value[14:16] + value[17:19] + frac
    if not (digits.isascii() and digits.isdigit()):
        return None
    h, m, sec = int(value[11:13]), int(value[14:16]), int(value[17:19])
    if h > 23 or m > 59 or sec > 59:
        return None
    date = value[:10]
    day = _DAY_MS.get(date)
    if day is None:
        if not (date[:4].isdigit() and date[4] == "-" and date[5:7].isdigit() and date[7] == "-" and date[8:].isdigit() and date.isascii()):
            return None
        try:
            day = _epoch_ms(datetime.fromisoformat(date).replace(tzinfo=timezone.utc))
        except ValueError:
            return None
        if len(_DAY_MS) > 100_000:  # bounded: about 270 years of distinct dates
            _DAY_MS.clear()
        _DAY_MS[date] = day
    return day + ((h * 60 + m) * 60 + sec) * 1000 + int(frac)


def _epoch_ms(dt: datetime) -> int:
    # integer arithmetic on the timedelta: exact, unlike float timestamp()
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_ts(ts_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``; the product's one output form.

    >>> format_ts(1767607200123)
    '2026-01-05T10:00:00.123Z'
    """
    minute, ms = divmod(ts_ms, 60_000)
    head = _MINUTES.get(minute)
    if head is None:  # records of one step mostly share their minutes: datetime once per minute
        if len(_MINUTES) > 100_000:
            _MINUTES.clear()
        head = _MINUTES[minute] = f"{datetime.fromtimestamp(minute * 60, tz=timezone.utc):%Y-%m-%dT%H:%M}:"
    return f"{head}{ms // 1000:02d}.{ms % 1000:03d}Z"


_MINUTES: dict[int, str] = {}  # epoch minute -> "YYYY-MM-DDTHH:MM:" (bounded: ~70 days of distinct minutes)


@lru_cache(maxsize=1024)
def is_known_zone(name: str) -> bool:
    """True for a valid IANA zone name (cached: the set of zones seen is small)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` for a zone name already accepted by :func:`is_known_zone`."""
    return ZoneInfo(name)
