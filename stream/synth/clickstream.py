"""A deterministic synthetic clickstream with planted personas, journeys and ground truth.

The stream is the input of the demo, the tests and the benchmarks (``intentstream
generate`` writes it, see :mod:`intentstream.stream.cli.generate`); the truth lets later
stages score clustering and triggers against what was really planted.

Activity spans ``days`` days from ``start`` (UTC), about 8 events per user per day over the
window (16 on an active day; explorers and coupon hunters more, churners and KYC personas
less). Where each part is decided:

* :mod:`~intentstream.stream.synth.config` — what to generate, and the counters of a run;
* :mod:`~intentstream.stream.synth.personas` — persona quotas, activity, which sessions
  carry each persona's journeys;
* :mod:`~intentstream.stream.synth.users` — one user's attributes and its sessions in order;
* :mod:`~intentstream.stream.synth.session_scripts` — the events of each kind of session;
* :mod:`~intentstream.stream.synth.delivery` — ids and ts, late, duplicate and invalid
  deliveries, the order lines come out in (delivery order, or a dump grouped by user);
* :mod:`~intentstream.stream.synth.realworld` — retried uploads with new ids, offline
  flushes, cross-device sessions (off by default);
* :mod:`~intentstream.stream.synth.truth` — the journeys in a user's events, its truth record.

>>> from intentstream.stream.synth.config import GeneratorConfig
>>> cfg = GeneratorConfig(users=3, days=1, seed=7)
>>> print(next(generate_lines(cfg)).decode(), end="")
{"channel":"web","device":"desktop","event_id":"e000002-00000","page":"/home","ts":"2026-01-05T06:02:39.148Z","type":"page_view","tz":"Asia/Shanghai","user_id":"u000002"}
>>> [(t["user_id"], t["persona"], [j["journey"] for j in t["journeys"]]) for t in generate_truth(cfg)]
[('u000000', 'coupon_hunter', ['purchase']), ('u000001', 'buyer_complete', ['purchase']), ('u000002', 'explorer', [])]
>>> b"".join(generate_lines(cfg)) == b"".join(generate_lines(cfg))
True
"""

from __future__ import annotations

from typing import Any, Iterator

from intentstream.stream import codec
from intentstream.stream.synth.config import GenerationStats, GeneratorConfig
from intentstream.stream.synth.delivery import UserFeed, deliver
from intentstream.stream.synth.personas import assign_personas
from intentstream.stream.synth.truth import truth_record
from intentstream.stream.synth.users import SyntheticUser, synthetic_users


def generate_lines(cfg: GeneratorConfig, stats: GenerationStats | None = None) -> Iterator[bytes]:
    """JSONL lines (with newline) in delivery order, invalid lines included.

    ``stats`` is filled as the lines are consumed and is complete once they are exhausted.
    """
    dumps_line = codec.dumps_line
    for item in deliver(cfg, stats):
        yield item if type(item) is bytes else dumps_line(item)
    if stats is not None:
        stats.lines = stats.events + stats.duplicates + stats.invalid + stats.retries


def generate_events(cfg: GeneratorConfig, stats: GenerationStats | None = None) -> Iterator[dict[str, Any]]:
    """Valid events as contract dicts (``ts`` ISO-8601 UTC) in delivery order, duplicates
    included (as equal copies) and retried uploads too (copies with new ids); invalid lines
    are left out (use :func:`generate_lines`)."""
    for item in deliver(cfg, stats):
        if not isinstance(item, bytes):
            yield item
    if stats is not None:
        stats.lines = stats.events + stats.duplicates + stats.invalid + stats.retries


def _user_feed(cfg: GeneratorConfig, user: SyntheticUser) -> tuple[UserFeed, list[dict[str, Any]]]:
    feed = UserFeed(cfg, user)
    events: list[dict[str, Any]] = []
    while (session := user.next_session()) is not None:
        events.extend(rec[3] for rec in feed.records(session))
    return feed, events


def generate_truth(cfg: GeneratorConfig) -> Iterator[dict[str, Any]]:
    """Ground truth, one dict per user sorted by user id: persona, tz, counts and journeys.

    Computed from each user's own events, exactly as a full generation collects it.
    """
    for user in synthetic_users(cfg):
        feed, _ = _user_feed(cfg, user)
        yield truth_record(feed, feed.journeys.finish())


def user_events(cfg: GeneratorConfig, index: int) -> list[dict[str, Any]]:
    """One user's events in event-time order (no late, duplicate, invalid or retried
    deliveries; a cross-device session's second device keeps its skewed ``ts``)."""
    user = SyntheticUser(cfg, index, assign_personas(cfg)[index], cfg.start_ms)
    return _user_feed(cfg, user)[1]
