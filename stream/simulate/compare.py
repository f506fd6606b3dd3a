"""Two policies on the same simulated worlds: what one changes against the other.

The closed-loop simulator (:mod:`intentstream.stream.simulate.loop`) runs each policy —
engine settings laid over the world's — on the same seeds, so both meet the same users
with the same planned journeys and the same reaction draws (common random numbers: every
draw is a hash of the seed and the action id). What is compared is read off the outputs
the engine published and the events the users sent back, never off the simulator's
hidden truth:

* **open rate** of the messages of some triggers: ``message_open`` reactions naming a
  sent action / actions sent (released deferrals included), with Wilson intervals and
  the Newcombe interval of the difference;
* **conversions**: measured conversions among the decisions' outcome records (both
  arms), per trigger and in all;
* **where the strategy policy's exploit traffic goes** (:func:`exploit_shares`): per
  trigger, the share of its later exploit decisions that use the arm the world planted
  as best (:func:`planted_best`), and the ROI guard's alerts.

>>> from intentstream.stream.simulate.world import engine_settings, load_world
>>> world = load_world()
>>> c = compare_policies(world, engine_settings(world), {"send_time": {"triggers": []}}, seeds=[1], users=60, days=7)
>>> c.open_a.n > 0 and c.open_b.n > 0 and c.conversions_a >= 0
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intentstream.stream import codec
from intentstream.stream.contract.events import parse_ts
from intentstream.stream.outcomes.uplift import Interval, newcombe_difference, wilson
from intentstream.stream.settings import Settings, overlay
from intentstream.stream.simulate.loop import SimulationResult, simulate
from intentstream.stream.simulate.world import World


@dataclass(frozen=True)
class Rate:
    """k of n, with its Wilson interval."""

    k: int
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, k: int, n: int, confidence: float) -> Rate:
        low, high = wilson(k, n, confidence) if n else (0.0, 1.0)
        return cls(k, n, low, high)

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    def __str__(self) -> str:
        return f"{self.value:.1%} [{self.low:.1%}, {self.high:.1%}] of {self.n:,}" if self.n else "not enough data"


@dataclass
class Comparison:
    """Policy A (the base settings with ``a`` laid over) against policy B (``b``)."""

    seeds: list[int]
    open_a: Rate
    open_b: Rate
    #: open rate A - B (Newcombe), None below 1 message per arm
    open_diff: Interval | None
    conversions_a: int
    conversions_b: int
    decisions_a: int
    decisions_b: int
    by_trigger: dict[str, tuple[int, int]] = field(default_factory=dict)  # trigger -> (conversions A, B)


def opens(res: SimulationResult, triggers: Iterable[str] | None = None) -> tuple[int, int]:
    """(opened, sent) over the messages of ``triggers`` (None: all) one run sent."""
    wanted = None if triggers is None else frozenset(triggers)
    sent = set()
    for line in res.decisions:
        rec = codec.loads(line)
        if rec.get("status") == "sent" and (wanted is None or rec["trigger"] in wanted):
            sent.add(rec["action_id"])
    opened = set()
    for line in res.clickstream:
        if b'"message_open"' not in line:
            continue
        ev = codec.loads(line)
        aid = (ev.get("props") or {}).get("action_id")
        if ev.get("type") == "message_open" and aid in sent:
            opened.add(aid)
    return len(opened), len(sent)


def conversions(res: SimulationResult) -> dict[str, int]:
    """Measured conversions in the run's outcome records, by trigger."""
    out: dict[str, int] = {}
    for rec in res.outcome_records():
        if rec.get("converted") and rec.get("measured", True):
            out[rec["trigger"]] = out.get(rec["trigger"], 0) + 1
    return out


def compare_policies(
    world: World,
    base: Settings,
    a: Mapping[str, Any],
    b: Mapping[str, Any] | None = None,
    *,
    seeds: Sequence[int],
    users: int,
    days: int,
    open_triggers: Iterable[str] | None = None,
    confidence: float = 0.95,
) -> Comparison:
    """Run policy A and policy B (settings tables laid over ``base``; B defaults to
    ``base`` itself) on every seed; ``open_triggers``: whose messages the open rate counts
    (None: A's ``[send_time] triggers``)."""
    sa = overlay(base, a, "policy A") if a else base
    sb = overlay(base, b, "policy B") if b else base
    if open_triggers is None:
        open_triggers = sa.send_time.triggers or sb.send_time.triggers
    ka = na = kb = nb = ca = cb = da = db = 0
    by_trigger: dict[str, list[int]] = {}
    for seed in seeds:
        ra, rb = simulate(world, sa, users, days, seed), simulate(world, sb, users, days, seed)
        k, n = opens(ra, open_triggers)
        ka, na = ka + k, na + n
        k, n = opens(rb, open_triggers)
        kb, nb = kb + k, nb + n
        for i, res in enumerate((ra, rb)):
            for trig, c in conversions(res).items():
                by_trigger.setdefault(trig, [0, 0])[i] += c
        ca += sum(conversions(ra).values())
        cb += sum(conversions(rb).values())
        da += len(ra.outcomes)
        db += len(rb.outcomes)
    diff = newcombe_difference(ka, na, kb, nb, confidence) if na and nb else None
    return Comparison(
        list(seeds), Rate.of(ka, na, confidence), Rate.of(kb, nb, confidence), diff, ca, cb, da, db,
        {t: (v[0], v[1]) for t, v in sorted(by_trigger.items())},
    )  # fmt: skip


def planted_best(world: World, catalogue: Any, arms: Mapping[str, Sequence[str]], margin: float = 0.02) -> dict[str, str]:
    """Per trigger, the arm whose planted effect (on its first channel) beats every other
    arm of the trigger by at least ``margin``; triggers without such a clear best are left out."""
    out = {}
    for trigger, keys in arms.items():
        effects = sorted(((world.effect(trigger, k, catalogue.strategies[k].channels[0]), k) for k in keys), reverse=True)
        if len(effects) > 1 and effects[0][0] - effects[1][0] >= margin:
            out[trigger] = effects[0][1]
    return out


def exploit_shares(res: SimulationResult, best: Mapping[str, str], skip: float = 0.5) -> dict[str, tuple[int, int, int]]:
    """Per trigger of ``best``: (exploit decisions to the best arm, exploit decisions,
    decisions skipped) over the trigger's decisions after the first ``skip`` share of
    them (the policy learning)."""
    by_trigger: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for rec in res.audit_records():  # each decision once (not its release or cancellation)
        policy = (rec.get("strategy") or {}).get("policy")
        if rec["trigger"] in best and policy is not None and "correction" not in rec and rec["action_id"] not in seen:
            seen.add(rec["action_id"])
            by_trigger.setdefault(rec["trigger"], []).append(policy)
    out = {}
    for trigger, policies in sorted(by_trigger.items()):
        first = int(len(policies) * skip)
        later = [p for p in policies[first:] if p["mode"] == "exploit"]
        out[trigger] = (sum(1 for p in later if p["arm"] == best[trigger]), len(later), first)
    return out


def exploit_by_week(res: SimulationResult, trigger: str, start_ms: int) -> list[tuple[int, Counter[str]]]:
    """Per week since ``start_ms``: how often each arm was exploited for ``trigger``
    (each decision once): the policy learning, as the demo shows it."""
    weeks: dict[int, Counter[str]] = {}
    seen: set[str] = set()
    for rec in res.audit_records():
        policy = (rec.get("strategy") or {}).get("policy")
        if rec["trigger"] != trigger or policy is None or policy["mode"] != "exploit" or rec["action_id"] in seen:
            continue
        seen.add(rec["action_id"])
        ts = parse_ts(rec["decided_at"])
        assert isinstance(ts, int)
        weeks.setdefault((ts - start_ms) // (7 * 86_400_000), Counter())[policy["arm"]] += 1
    return sorted(weeks.items())
