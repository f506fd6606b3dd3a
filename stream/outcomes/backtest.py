"""Two policies on the same history: what each decided, and the difference.

``intentstream backtest`` (:mod:`intentstream.stream.cli.backtest`) replays one history
through the offline engine once per policy and hands each run's ``actions.audit``
records here. This module is the pure half: from audit records to each decision's
*final* state (:func:`final_decisions`: a deferred message later released counts as
sent, one cancelled as cancelled; corrections are flagged), a policy's tallies
(:class:`PolicySummary`), the users whose decisions differ, and — given an uplift
table measured on real holdouts (:mod:`intentstream.stream.outcomes.uplift`) — the
expected incremental conversions of each policy's sends.

The expected conversions are an *estimate*: they assume the uplift per send measured
in a cell transfers to this policy's sends in that cell. The bounds add up the
cells' interval ends (a crude bound, not a confidence interval). :data:`CAVEATS` says
what a replay can and cannot tell.

>>> audit = [
...     {"action_id": "a", "user_id": "u1", "trigger": "cart_abandoned", "channel": "push",
...      "status": "deferred", "reason": "quiet_hours", "decided_at": "2026-01-05T23:00:00.000Z",
...      "fallback_from": None, "strategy": {"key": "k"}, "persona": None},
...     {"action_id": "b", "user_id": "u2", "trigger": "cart_abandoned", "channel": None,
...      "status": "suppressed", "reason": "fatigue_cap", "decided_at": "2026-01-05T23:10:00.000Z",
...      "fallback_from": None, "strategy": {"key": "k"}, "persona": None},
...     {"action_id": "a", "user_id": "u1", "trigger": "cart_abandoned", "channel": "push",
...      "status": "sent", "reason": None, "decided_at": "2026-01-05T23:00:00.000Z",
...      "fallback_from": None, "strategy": {"key": "k"}, "persona": None},
... ]
>>> s = PolicySummary.of(final_decisions(audit))
>>> s.rows, s.quiet_hours, s.fatigue_cap, s.users, s.users_sent
({('cart_abandoned', 'none', 'suppressed'): 1, ('cart_abandoned', 'push', 'sent'): 1}, 1, 1, 2, 1)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream.decisions.contract import split_audit
from intentstream.stream.outcomes.uplift import UpliftTable, dimension_values, lookup

#: How many users whose decisions differ are shown, unless told otherwise.
EXAMPLES: Final = 5

#: The label of every expected-conversion figure.
ESTIMATE_LABEL: Final = "estimate, assumes the measured uplift transfers to these decisions"

#: What a backtest can and cannot tell (printed with every report).
CAVEATS: Final = (
    "A backtest replays the recorded history through each policy: it shows which messages "
    "each policy would have decided, on which channel, and which caps, quiet hours and "
    "holdouts it would have hit.",
    "It cannot show how users would have reacted to different messages: reactions are not "
    "simulated. The feedback events in the history (opens, clicks, dismissals, "
    "unsubscribes, conversions) reflect the messages actually sent, and both policies see "
    "the same ones.",
    "Expected incremental conversions apply uplift measured on real holdout groups to the "
    "replayed sends; they are only as good as the assumption that this uplift transfers.",
)


@dataclass(frozen=True, slots=True)
class FinalDecision:
    """One decision of a replay, in its final state. ``decided_at`` is the audit's ISO
    text (fixed width, so it sorts as time); ``held`` is true when the decision was first
    deferred for quiet hours; ``channel`` is ``"none"`` when the decision had none."""

    action_id: str
    user_id: str
    trigger: str
    channel: str
    status: str
    reason: str | None
    decided_at: str
    strategy: str
    persona: str
    held: bool = False
    fallback: bool = False
    corrected: bool = False

    def brief(self) -> dict[str, Any]:
        """What the report shows of one decision."""
        return {"trigger": self.trigger, "channel": self.channel, "status": self.status,
                "reason": self.reason, "decided_at": self.decided_at}  # fmt: skip


def final_decisions(audit: Iterable[Mapping[str, Any]]) -> list[FinalDecision]:
    """The decisions of an ``actions.audit`` stream (as dicts), each in its final state,
    in stream order: the status and reason of the last follow-up (release or
    cancellation) replace the first ones; a correction sets ``corrected``."""
    decided, later, corrections = split_audit(audit)
    final = {r["action_id"]: (r["status"], r["reason"]) for r in later}
    corrected = {r["action_id"] for r in corrections}
    out = []
    for r in decided:
        aid = r["action_id"]
        status, reason = final.get(aid, (r["status"], r["reason"]))
        cell = dimension_values(r)  # the uplift table's cell of this decision
        out.append(FinalDecision(
            action_id=aid, user_id=r["user_id"], trigger=cell["trigger"], channel=cell["channel"],
            status=status, reason=reason, decided_at=r["decided_at"], strategy=cell["strategy"], persona=cell["persona"],
            held=r["status"] == "deferred" and r["reason"] == "quiet_hours",
            fallback=r.get("fallback_from") is not None, corrected=aid in corrected,
        ))  # fmt: skip
    return out


#: The counts of :class:`PolicySummary`, in report order.
COUNTS: Final = ("decisions", "sent", "users", "users_sent", "fatigue_cap", "quiet_hours", "holdout", "fallbacks", "corrected")


@dataclass(frozen=True)
class PolicySummary:
    """A policy's tallies: decisions by (trigger, channel, final status), final reasons,
    users with a decision and users sent a message, and the hits the brief asks for —
    ``fatigue_cap`` (suppressed for caps), ``quiet_hours`` (first deferred for quiet
    hours, whatever became of it), ``holdout`` — plus fallbacks and corrections."""

    decisions: int
    sent: int
    users: int
    users_sent: int
    fatigue_cap: int
    quiet_hours: int
    holdout: int
    fallbacks: int
    corrected: int
    rows: dict[tuple[str, str, str], int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, decisions: Sequence[FinalDecision]) -> PolicySummary:
        rows = Counter((d.trigger, d.channel, d.status) for d in decisions)
        reasons = Counter(d.reason for d in decisions if d.reason)
        sent = [d for d in decisions if d.status == "sent"]
        return cls(
            decisions=len(decisions), sent=len(sent),
            users=len({d.user_id for d in decisions}), users_sent=len({d.user_id for d in sent}),
            fatigue_cap=sum(d.status == "suppressed" and d.reason == "fatigue_cap" for d in decisions),
            quiet_hours=sum(d.held for d in decisions),
            holdout=sum(d.status == "holdout" for d in decisions),
            fallbacks=sum(d.fallback for d in decisions), corrected=sum(d.corrected for d in decisions),
            rows=dict(sorted(rows.items())), reasons=dict(sorted(reasons.items())),
        )  # fmt: skip

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTS}


def row_differences(base: PolicySummary, cand: PolicySummary) -> list[dict[str, Any]]:
    """Every (trigger, channel, status) either policy has, with both counts and the
    difference (candidate − baseline), sorted by the key.

    >>> b = PolicySummary(1, 1, 1, 1, 0, 0, 0, 0, 0, rows={("t", "push", "sent"): 1})
    >>> c = PolicySummary(1, 0, 1, 0, 1, 0, 0, 0, 0, rows={("t", "none", "suppressed"): 1})
    >>> [(r["channel"], r["difference"]) for r in row_differences(b, c)]
    [('none', 1), ('push', -1)]
    """
    keys = sorted(set(base.rows) | set(cand.rows))
    return [
        {"trigger": t, "channel": ch, "status": st, "baseline": base.rows.get((t, ch, st), 0),
         "candidate": cand.rows.get((t, ch, st), 0),
         "difference": cand.rows.get((t, ch, st), 0) - base.rows.get((t, ch, st), 0)}
        for t, ch, st in keys
    ]  # fmt: skip


def _by_user(decisions: Iterable[FinalDecision]) -> dict[str, list[FinalDecision]]:
    out: dict[str, list[FinalDecision]] = defaultdict(list)
    for d in decisions:
        out[d.user_id].append(d)
    for ds in out.values():
        ds.sort(key=lambda d: (d.decided_at, d.trigger, d.action_id))
    return out


def _signature(ds: Sequence[FinalDecision]) -> list[tuple[Any, ...]]:
    return [(d.decided_at, d.trigger, d.channel, d.status, d.reason) for d in ds]


def user_differences(
    base: Sequence[FinalDecision], cand: Sequence[FinalDecision], examples: int = EXAMPLES
) -> tuple[int, list[dict[str, Any]]]:
    """How many users' decisions differ (time, trigger, channel, final status or reason)
    between the two policies, and the first ``examples`` of them by user id, each with
    both policies' decisions in time order."""
    b, c = _by_user(base), _by_user(cand)
    differ = sorted(u for u in set(b) | set(c) if _signature(b.get(u, [])) != _signature(c.get(u, [])))
    shown = [
        {"user_id": u, "baseline": [d.brief() for d in b.get(u, [])], "candidate": [d.brief() for d in c.get(u, [])]}
        for u in differ[:examples]
    ]
    return len(differ), shown


@dataclass(frozen=True)
class UpliftEstimate:
    """Expected incremental conversions of a policy's sends: Σ of the matching uplift
    row's ``uplift_per_send`` over every sent decision (``low``/``high`` add up the
    interval ends); ``not_estimated`` sends had no row with enough data. ``per_row``
    counts the estimated sends per row (keyed by the row's position in the table)."""

    estimate: float
    low: float
    high: float
    estimated: int
    not_estimated: int
    per_row: dict[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"label": ESTIMATE_LABEL, "estimate": self.estimate, "low": self.low, "high": self.high,
                "sends_estimated": self.estimated, "sends_not_estimated": self.not_estimated}  # fmt: skip


def expected_conversions(decisions: Iterable[FinalDecision], table: UpliftTable) -> UpliftEstimate:
    """:class:`UpliftEstimate` of the sent ``decisions`` under ``table`` (an
    :class:`~intentstream.stream.outcomes.uplift.UpliftTable`), each matched with
    :func:`~intentstream.stream.outcomes.uplift.lookup` on (trigger, strategy, channel,
    persona)."""
    position = {id(row): i for i, row in enumerate(table.rows)}
    per_row: Counter[int] = Counter()
    missing = 0
    for d in decisions:
        if d.status != "sent":
            continue
        row = lookup(table, d.trigger, d.strategy, d.channel, d.persona)
        if row is None or not row.enough or row.uplift_per_send is None:
            missing += 1
        else:
            per_row[position[id(row)]] += 1
    return _sum(table, dict(sorted(per_row.items())), missing)


def _sum(table: UpliftTable, per_row: Mapping[int, int], missing: int) -> UpliftEstimate:
    est = low = high = 0.0
    for i, n in per_row.items():
        u = table.rows[i].uplift_per_send
        assert u is not None  # per_row counts only rows with an estimate
        est, low, high = est + n * u.estimate, low + n * u.low, high + n * u.high
    return UpliftEstimate(est, low, high, sum(per_row.values()), missing, dict(per_row))


def estimate_difference(base: UpliftEstimate, cand: UpliftEstimate, table: UpliftTable) -> dict[str, Any]:
    """Candidate − baseline expected conversions. The bound takes, row by row, the end of
    the row's interval that makes the difference smallest (``low``) or largest
    (``high``): where the candidate sends more, its low end; where fewer, its high end —
    the same crude bound as each policy's, applied to the change in sends."""
    est = low = high = 0.0
    for i in sorted(set(base.per_row) | set(cand.per_row)):
        n = cand.per_row.get(i, 0) - base.per_row.get(i, 0)
        u = table.rows[i].uplift_per_send
        assert u is not None  # per_row counts only rows with an estimate
        est += n * u.estimate
        low += n * (u.low if n > 0 else u.high)
        high += n * (u.high if n > 0 else u.low)
    return {"label": ESTIMATE_LABEL, "estimate": est, "low": low, "high": high,
            "sends_not_estimated": cand.not_estimated - base.not_estimated}  # fmt: skip


def compare(
    base: Sequence[FinalDecision],
    cand: Sequence[FinalDecision],
    *,
    table: UpliftTable | None = None,
    examples: int = EXAMPLES,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole backtest as one JSON-ready dict (sorted, deterministic): each policy's
    counts and rows, the differences, the users whose decisions differ with examples,
    the expected incremental conversions when ``table`` is given, and the caveats.
    ``labels`` names the two policies' sources (``{"baseline": ..., "candidate": ...}``)."""
    sb, sc = PolicySummary.of(base), PolicySummary.of(cand)
    n_differ, shown = user_differences(base, cand, examples)
    labels = labels or {}
    policies = {}
    for name, s in (("baseline", sb), ("candidate", sc)):
        policies[name] = {"source": labels.get(name, name), "counts": s.counts(), "reasons": s.reasons,
                          "rows": [{"trigger": t, "channel": ch, "status": st, "count": n}
                                   for (t, ch, st), n in s.rows.items()]}  # fmt: skip
    out: dict[str, Any] = {
        "policies": policies,
        "difference": {
            "counts": {k: sc.counts()[k] - sb.counts()[k] for k in COUNTS},
            "reasons": {r: sc.reasons.get(r, 0) - sb.reasons.get(r, 0) for r in sorted(set(sb.reasons) | set(sc.reasons))},
            "rows": row_differences(sb, sc),
        },
        "users_differ": n_differ,
        "examples": shown,
        "uplift": None,
        "caveats": list(CAVEATS),
    }
    if table is not None:
        eb, ec = expected_conversions(base, table), expected_conversions(cand, table)
        out["uplift"] = {"baseline": eb.to_dict(), "candidate": ec.to_dict(),
                         "difference": estimate_difference(eb, ec, table),
                         "confidence": table.confidence, "min_per_arm": table.min_per_arm}  # fmt: skip
    return out
