"""Where the persona report's model comes from: the live checkpoint in Redis, a segments
file, or a clickstream file.

* :func:`live_model`: the personas agent's model, restored from its checkpoint in Redis
  (``[redis] url``; see :mod:`intentstream.stream.state.redis.personas`);
* :func:`read_segments`: closed segments (``intentstream segments`` output), then
  :func:`learn` them in file order;
* :func:`segments_from_clickstream`: a clickstream cut into segments by the offline
  sessionizer (:class:`intentstream.stream.engine.offline.OfflineRunner`, the live
  engine on a file), then learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from intentstream.stream import codec
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.settings import PersonaSettings, Settings

if TYPE_CHECKING:
    from intentstream.stream.engine.offline import OfflineRunner

__all__ = ["learn", "live_model", "read_segments", "segments_from_clickstream"]


def segments_from_clickstream(
    lines: Iterable[tuple[int, bytes]], settings: Settings, runner: OfflineRunner | None = None
) -> Iterator[dict[str, Any]]:
    """Closed segments (dicts) of a clickstream, from the offline sessionizer (``runner``,
    or a new one on ``settings``)."""
    from intentstream.stream.engine.offline import OfflineRunner

    topic = settings.topics.segments
    for t, payload in (runner or OfflineRunner(settings)).run(lines, close_open=True):
        if t == topic:
            yield codec.loads(payload)


def read_segments(lines: Iterable[tuple[int, bytes]]) -> Iterator[dict[str, Any]]:
    """Segment dicts of a segments JSONL file (``intentstream segments`` output)."""
    for lineno, raw in lines:
        try:
            obj = codec.loads(raw)
        except codec.JSONDecodeError as exc:
            raise ValueError(f"line {lineno}: not JSON ({exc})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("user_id"), str):
            raise ValueError(f"line {lineno}: not an intent segment")
        yield obj


def learn(segments: Iterable[Any], cfg: PersonaSettings) -> PersonaModel:
    model = PersonaModel(cfg)
    for seg in segments:
        model.learn_one(seg)
    return model


def live_model(settings: Settings) -> PersonaModel:
    """The personas agent's model, from its last checkpoint in Redis."""
    from intentstream.stream.state.redis.personas import RedisPersonaStore

    store = RedisPersonaStore.from_settings(settings)
    try:
        data = store.load_checkpoint()
    finally:
        store.close()
    if data is None:
        raise LookupError("no persona checkpoint in Redis yet (is the personas agent running?)")
    return PersonaModel.from_checkpoint(data, settings.personas)
