"""One user's events and what the engine published about them: a :class:`UserTrace`.

:func:`trace_offline` runs a clickstream through the
:class:`~intentstream.stream.engine.offline.OfflineRunner` — the settings and simulated
partitions of ``replay --offline``, so the decisions are byte for byte what the live
worker publishes — and keeps the user's events and outputs. The end of input follows
the runner's rule (every partition raised to the highest watermark); sessions still open
then stay open, as they would live.

>>> lines = [b'{"event_id":"e1","user_id":"u1","ts":1767607200000,"type":"add_to_cart"}',
...          b'{"event_id":"e2","user_id":"u2","ts":1767610800000,"type":"page_view"}',
...          b'{"event_id":"e3","user_id":"u1","ts":1767614400000,"type":"page_view"}']
>>> t = trace_offline(enumerate(lines, 1), "u1")
>>> [e.event_id for e in t.events], [d["trigger"] for d in t.audit]
(['e1', 'e3'], ['cart_abandoned'])
>>> trace_offline(enumerate(lines, 1), "nobody").known
False
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from intentstream.stream import codec
from intentstream.stream.contract.events import Event
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.ingest.input_formats import parser_for
from intentstream.stream.settings import Settings, default_settings

if TYPE_CHECKING:
    from intentstream.stream.explain.live import LiveState


@dataclass
class UserTrace:
    """``events``: the user's valid events in arrival (file / offset) order; ``segments``,
    ``audit`` and ``outcomes``: the engine's records about the user (as published, in
    publication order); ``live``: the user's state in Redis now (live mode only)."""

    user_id: str
    events: list[Event] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    #: where it came from (a file name, or ``live``)
    source: str = "-"
    live: LiveState | None = None

    @property
    def known(self) -> bool:
        """Whether anything at all is known of the user."""
        return bool(self.events or self.audit or self.outcomes or self.segments or (self.live is not None and self.live.found))

    def add_output(self, topic: str, record: dict[str, Any], settings: Settings) -> None:
        """Keep one published record (already known to be the user's) by its topic."""
        topics = settings.topics
        if topic == topics.segments:
            self.segments.append(record)
        elif topic == topics.audit:
            self.audit.append(record)
        elif topic == topics.outcomes:
            self.outcomes.append(record)


def _teed(lines: Iterable[tuple[int, bytes]], needle: bytes, parse: Any, user_id: str, into: list[Event]) -> Iterator[tuple[int, bytes]]:
    """The lines unchanged; the user's valid events appended to ``into`` on the way
    (a cheap byte test first: most lines are other users')."""
    for lineno, raw in lines:
        if needle in raw:
            ev = parse(raw)
            if type(ev) is Event and ev.user_id == user_id:
                into.append(ev)
        yield lineno, raw


def trace_offline(
    lines: Iterable[tuple[int, bytes]], user_id: str, settings: Settings | None = None,
    runner: OfflineRunner | None = None, source: str = "-",
) -> UserTrace:  # fmt: skip
    """Run ``(line number, raw line)`` through the offline engine; the user's trace.
    ``runner``: one already set up (e.g. measuring disorder, :func:`~intentstream.stream.cli.offline_files.offline_runner`)."""
    settings = settings or default_settings()
    runner = runner or OfflineRunner(settings)
    trace = UserTrace(user_id, source=source)
    needle = codec.dumps(user_id)  # the JSON string, quotes included
    parse = parser_for(settings.events.input_format)
    wanted = {settings.topics.segments, settings.topics.audit, settings.topics.outcomes}
    for topic, payload in runner.run(_teed(lines, needle, parse, user_id, trace.events)):
        if topic in wanted and needle in payload:
            rec = codec.loads(payload)
            if rec.get("user_id") == user_id:
                trace.add_output(topic, rec, settings)
    return trace
