"""``intentstream resume [--dry-run] [--discard] [--show N]``: what the circuit breakers
hold, per partition and channel, then release it or discard it (README, "Operating the
worker"; the mechanics are in :mod:`intentstream.agents.breaker`).

* ``--dry-run``: print the breaker's state and the held ``actions.*`` records (counts and
  the first action ids of each partition and channel); change nothing.
* default: close the storm breaker; the workers publish the held records of their
  partitions in outbox order (still under the send-rate limits) within ``[worker]
  idle_tick_s``, each exactly once.
* ``--discard``: the held records shown are never sent: each one's partition owner
  replaces it with an audit record (``"status": "discarded", "reason":
  "discarded_by_operator"``) on the audit topic; then the breaker closes.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from intentstream.stream.cli import non_negative_int
from intentstream.stream.cli.terminal import error
from intentstream.stream.settings import Settings, load_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="show what the circuit breakers hold, then release (or discard) it")
    p.add_argument("--dry-run", action="store_true", help="only show what is held and would be released")
    p.add_argument("--discard", action="store_true", help="discard the held actions (audited as discarded_by_operator) instead of sending them")
    p.add_argument("--show", type=non_negative_int, default=3, metavar="N", help="action ids shown per partition and channel (default 3)")
    p.set_defaults(func=run)


def describe(settings: Settings, state: dict[str, str], held: dict, show: int, out: TextIO) -> int:
    """Print the breaker's state and the held records; return how many are held."""
    from intentstream.stream.codec import loads
    from intentstream.stream.contract.events import format_ts

    if state.get("state") == "open":
        since = format_ts(int(state["since"])) if state.get("since") else "?"
        print(f"breaker: OPEN since {since} (tripped by {state.get('worker') or '?'}: {state.get('reason')}: {state.get('detail')})", file=out)
    else:
        print("breaker: closed (records below, if any, are held by send-rate limits or wait for their worker)", file=out)
    channel = settings.topics.actions_prefix
    total = 0
    print(f"{'partition':>9}  {'channel':<10} {'held':>7}  first action ids", file=out)
    for p, entries in sorted(held.items()):
        by_channel: dict[str, list] = {}
        for e in entries:
            by_channel.setdefault(e.topic[len(channel) :], []).append(e)
        for ch, es in sorted(by_channel.items()):
            ids = ", ".join(loads(e.value).get("action_id", e.id) for e in es[:show])
            print(f"{p:>9}  {ch:<10} {len(es):>7}  {ids}", file=out)
            total += len(es)
    print(f"{total:,} held action(s)", file=out)
    return total


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from redis.exceptions import RedisError

    from intentstream.agents.breaker import channel_of_topic, held_by_partition, read_state, release
    from intentstream.stream.state.redis.sessions import RedisSessionStore

    settings = load_settings(args.config)
    store = RedisSessionStore.from_settings(settings)
    try:
        state = read_state(store.client, store.prefix)
        held = held_by_partition(store, range(settings.topics.partitions), channel_of_topic(settings))
    except (ConnectionError, OSError, RedisError) as exc:
        return error("resume", f"Redis unavailable: {exc}", status=1)
    total = describe(settings, state, held, args.show, out)
    if args.dry_run:
        verb = "discard" if args.discard else "release"
        print(f"dry run: nothing changed; `intentstream resume{' --discard' if args.discard else ''}` would {verb} them", file=out)
        return 0
    upto = {p: max(e.seq for e in es) for p, es in held.items() if es} if args.discard else None
    release(store.client, store.prefix, upto)
    if args.discard:
        print(f"discarded: the workers replace {total:,} held action(s) by discarded_by_operator audit records; breaker closed", file=out)
    else:
        print(f"released: the workers publish {total:,} held action(s) in order (within [worker] idle_tick_s; send-rate limits apply)", file=out)
    return 0
