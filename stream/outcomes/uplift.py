"""Uplift per trigger, strategy, channel and persona, with intervals: what the messages
are worth, measured against each trigger's holdout group.

The design is intention to treat with one-sided noncompliance (README, "Measuring
uplift"). The population is the measured outcome records
(:func:`~intentstream.stream.outcomes.record.is_measured`); in each cell the treatment
arm is every record whose user is in the trigger's treatment arm, *whatever happened to
the message* (sent, but also cancelled, or suppressed for caps or an opt-out), and the
control is the holdout arm. Comparing arms as assigned keeps the comparison randomised;
comparing only the sent messages with the holdout would not (who gets suppressed is not
random).

* ``cvr`` = converted / decisions in the treatment arm, ``holdout_cvr`` likewise;
* ``uplift_abs`` (the ITT effect) = cvr - holdout_cvr, with Newcombe's hybrid score
  interval built from the two arms' Wilson intervals;
* ``uplift_rel`` = cvr / holdout_cvr - 1, interval from SciPy's relative risk (None when
  either arm has no conversion: the ratio or its interval is not finite);
* ``uplift_per_send`` (the complier average effect) = ITT / s, where s is the share of
  the treatment arm whose message was sent; its interval is the ITT interval divided by
  s, treating s as known (it is observed, not estimated from the outcome);
* ``incremental`` = uplift_per_send x sends: conversions the messages caused.

A cell with fewer than ``min_per_arm`` decisions in either arm has ``enough = False``
and no uplift numbers at all ("not enough data"); its counts and plain rates stay.

>>> def rec(i, arm, converted, status="sent"):
...     return {"user_id": f"u{i}", "trigger": "cart_abandoned", "status": status, "reason": None,
...             "strategy": {"key": "cart_reminder", "group": "primary"}, "channel": "push",
...             "experiment": {"id": "holdout-v2/cart_abandoned", "arm": arm}, "persona": None,
...             "opened": False, "clicked": converted, "converted": converted, "corrected": False}
>>> recs = [rec(i, "treatment", i < 56) for i in range(70)] + [rec(i, "holdout", i < 48, "holdout") for i in range(80)]
>>> table = summarize(recs, levels=(("trigger",),), min_per_arm=30, confidence=0.95)
>>> row = table.rows[0]
>>> row.key["trigger"], row.treatment, row.holdout, row.enough
('cart_abandoned', 70, 80, True)
>>> print(f"{row.uplift_abs.estimate:.4f} [{row.uplift_abs.low:.4f}, {row.uplift_abs.high:.4f}]")
0.2000 [0.0524, 0.3339]
>>> lookup(table, "cart_abandoned", "cart_reminder", "push", "unknown") is row
True
>>> summarize(recs[:40] + recs[70:80], levels=(("trigger",),), min_per_arm=30).rows[0].uplift_abs is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from intentstream.stream.outcomes.record import HOLDOUT, TREATMENT, arm_of, is_measured, is_treated
from intentstream.stream.settings import default_settings

__all__ = ["ALL", "DEFAULT_LEVELS", "DIMENSIONS", "Interval", "UpliftRow", "UpliftTable", "dimension_values", "lookup", "summarize"]

#: The dimensions a table can be cut by, in key order.
DIMENSIONS: Final = ("trigger", "strategy", "channel", "persona", "mode")

#: The key value of a dimension a row does not cut by ("all").
ALL: Final = "*"

#: Per trigger; per trigger, strategy and channel; and that per persona.
DEFAULT_LEVELS: Final = (("trigger",), ("trigger", "strategy", "channel"), ("trigger", "strategy", "channel", "persona"))


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.estimate * factor, self.low * factor, self.high * factor)


@dataclass(frozen=True)
class UpliftRow:
    """One cell of the table. ``key`` names every dimension, ``"*"`` for "all".

    Counts: ``treatment`` / ``holdout`` decisions per arm; ``sent``, ``opened``,
    ``clicked`` among the treatment arm's sent messages; conversions per arm. Rates are
    None when their denominator is 0: ``ctr`` = clicked / sent, ``cvr`` =
    converted_treatment / treatment, ``holdout_cvr`` = converted_holdout / holdout. The
    uplift fields are None unless ``enough`` (and individually where undefined).
    """

    key: dict[str, str]
    treatment: int
    holdout: int
    sent: int
    opened: int
    clicked: int
    converted_treatment: int
    converted_holdout: int
    ctr: float | None
    cvr: float | None
    holdout_cvr: float | None
    uplift_abs: Interval | None
    uplift_rel: Interval | None
    uplift_per_send: Interval | None
    incremental: Interval | None
    enough: bool


_INTERVALS: Final = ("uplift_abs", "uplift_rel", "uplift_per_send", "incremental")


@dataclass(frozen=True)
class UpliftTable:
    """Rows in a fixed order (by level as given, then by key), and what they rest on:
    ``records`` read, ``measured`` of them in the population."""

    rows: list[UpliftRow]
    confidence: float
    min_per_arm: int
    records: int
    measured: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (intervals as ``{"estimate", "low", "high"}`` or null)."""
        return {
            "confidence": self.confidence,
            "min_per_arm": self.min_per_arm,
            "records": self.records,
            "measured": self.measured,
            "rows": [asdict(row) for row in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UpliftTable:
        """Inverse of :meth:`to_dict`."""
        rows = []
        for r in d["rows"]:
            fields = dict(r)
            fields["key"] = dict(r["key"])
            for name in _INTERVALS:
                fields[name] = None if r[name] is None else Interval(**r[name])
            rows.append(UpliftRow(**fields))
        return cls(rows, float(d["confidence"]), int(d["min_per_arm"]), int(d["records"]), int(d["measured"]))


def dimension_values(rec: Mapping[str, Any], persona_of: Callable[[Mapping[str, Any]], str] | None = None) -> dict[str, str]:
    """A record's value of every dimension: ``strategy`` is the strategy key,
    ``channel`` the channel or ``none``, ``persona`` the behaviour persona's cluster id
    or ``unknown`` (or ``persona_of(rec)`` when given), ``mode`` how the strategy policy
    chose the arm (``explore``, ``exploit``, ``retest``, ``rule``; ``none`` without the
    policy) — both arms of the holdout carry it, so explored and exploited traffic each
    get their own uplift.

    >>> dimension_values({"trigger": "t", "strategy": {"key": "s"}, "channel": None, "persona": None})
    {'trigger': 't', 'strategy': 's', 'channel': 'none', 'persona': 'unknown', 'mode': 'none'}
    """
    strategy = rec.get("strategy")
    persona = rec.get("persona")
    policy = strategy.get("policy") if isinstance(strategy, Mapping) else None
    return {
        "trigger": str(rec["trigger"]),
        "strategy": str(strategy.get("key") or "none") if isinstance(strategy, Mapping) else "none",
        "channel": str(rec.get("channel") or "none"),
        "persona": persona_of(rec) if persona_of is not None else
        str(persona.get("cluster_id") or "unknown") if isinstance(persona, Mapping) else "unknown",
        "mode": str(policy.get("mode") or "none") if isinstance(policy, Mapping) else "none",
    }  # fmt: skip


class _Cell:
    """Running counts of one cell."""

    __slots__ = ("treatment", "holdout", "sent", "opened", "clicked", "conv_t", "conv_h")

    def __init__(self) -> None:
        self.treatment = self.holdout = self.sent = self.opened = self.clicked = self.conv_t = self.conv_h = 0

    def add(self, rec: Mapping[str, Any]) -> None:
        converted = bool(rec["converted"])
        if arm_of(rec) == HOLDOUT:
            self.holdout += 1
            self.conv_h += converted
            return
        self.treatment += 1
        self.conv_t += converted
        if is_treated(rec):
            self.sent += 1
            self.opened += bool(rec["opened"])
            self.clicked += bool(rec["clicked"])


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (SciPy).

    >>> [round(x, 4) for x in wilson(0, 10, 0.95)]   # Newcombe (1998a): 0/10 -> 0 to 0.2775
    [0.0, 0.2775]
    """
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, confidence: float) -> Interval:
    """p1 - p2 with Newcombe's hybrid score interval: Newcombe, R. G. (1998), "Interval
    estimation for the difference between independent proportions: comparison of eleven
    methods", Statistics in Medicine 17, 873-890, method 10. From the Wilson intervals
    (l1, u1), (l2, u2) of the two proportions:
    low = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), high = d + sqrt((u1 - p1)^2 + (p2 - l2)^2).
    Good coverage at small counts and at 0 or n, unlike the Wald interval.

    >>> i = newcombe_difference(9, 10, 3, 10, 0.95)   # Newcombe's example (b)
    >>> round(i.estimate, 4), round(i.low, 4), round(i.high, 4)
    (0.6, 0.1705, 0.809)
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    return Interval(d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def relative_uplift(k1: int, n1: int, k2: int, n2: int, confidence: float) -> Interval | None:
    """p1 / p2 - 1 with the interval of SciPy's relative risk (log method); None when
    either arm has no conversion (the ratio or one end of its interval is not finite).

    >>> i = relative_uplift(10, 50, 5, 50, 0.95)
    >>> round(i.estimate, 3), round(i.low, 3), round(i.high, 3)
    (1.0, -0.264, 4.433)
    >>> relative_uplift(5, 50, 0, 50, 0.95) is None, relative_uplift(0, 50, 5, 50, 0.95) is None
    (True, True)
    """
    if k1 == 0 or k2 == 0:
        return None
    from scipy.stats.contingency import relative_risk

    rr = relative_risk(k1, n1, k2, n2)
    ci = rr.confidence_interval(confidence_level=confidence)
    values = (float(rr.relative_risk), float(ci.low), float(ci.high))
    if not all(math.isfinite(v) for v in values):
        return None
    return Interval(*(v - 1.0 for v in values))


def _row(key: dict[str, str], c: _Cell, min_per_arm: int, confidence: float) -> UpliftRow:
    enough = c.treatment >= max(1, min_per_arm) and c.holdout >= max(1, min_per_arm)
    itt = rel = per_send = incremental = None
    if enough:
        itt = newcombe_difference(c.conv_t, c.treatment, c.conv_h, c.holdout, confidence)
        rel = relative_uplift(c.conv_t, c.treatment, c.conv_h, c.holdout, confidence)
        if c.sent:
            per_send = itt.scaled(c.treatment / c.sent)  # ITT / s, s = sent / treatment
            incremental = per_send.scaled(c.sent)
    return UpliftRow(
        key=key,
        treatment=c.treatment,
        holdout=c.holdout,
        sent=c.sent,
        opened=c.opened,
        clicked=c.clicked,
        converted_treatment=c.conv_t,
        converted_holdout=c.conv_h,
        ctr=c.clicked / c.sent if c.sent else None,
        cvr=c.conv_t / c.treatment if c.treatment else None,
        holdout_cvr=c.conv_h / c.holdout if c.holdout else None,
        uplift_abs=itt,
        uplift_rel=rel,
        uplift_per_send=per_send,
        incremental=incremental,
        enough=enough,
    )


def summarize(
    records: Iterable[Mapping[str, Any]],
    *,
    levels: Sequence[Sequence[str]] = DEFAULT_LEVELS,
    min_per_arm: int | None = None,
    confidence: float | None = None,
    persona_of: Callable[[Mapping[str, Any]], str] | None = None,
) -> UpliftTable:
    """The uplift table of outcome records (dicts, as on ``actions.outcomes``): one row
    per cell of each level (a tuple of :data:`DIMENSIONS`). ``min_per_arm`` and
    ``confidence`` default to ``[outcomes]``; ``persona_of(record)`` replaces the
    record's behaviour persona (e.g. the report's River cluster of the user). Records
    outside the measured population are counted in ``records`` only."""
    defaults = default_settings().outcomes
    min_per_arm = defaults.min_per_arm if min_per_arm is None else min_per_arm
    confidence = defaults.confidence if confidence is None else confidence
    levels = [tuple(level) for level in levels]
    for level in levels:
        unknown = [d for d in level if d not in DIMENSIONS]
        if unknown or not level:
            raise ValueError(f"bad level {level!r}: dimensions are {', '.join(DIMENSIONS)}")
    cells: list[dict[tuple[str, ...], _Cell]] = [{} for _ in levels]
    total = measured = 0
    for rec in records:
        total += 1
        if not is_measured(rec) or arm_of(rec) not in (TREATMENT, HOLDOUT):
            continue
        measured += 1
        values = dimension_values(rec, persona_of)
        for level, level_cells in zip(levels, cells):
            key = tuple(values[d] if d in level else ALL for d in DIMENSIONS)
            cell = level_cells.get(key)
            if cell is None:
                cell = level_cells[key] = _Cell()
            cell.add(rec)
    rows = [
        _row(dict(zip(DIMENSIONS, key)), level_cells[key], min_per_arm, confidence)
        for level_cells in cells
        for key in sorted(level_cells)
    ]
    return UpliftTable(rows, confidence, min_per_arm, total, measured)


def lookup(table: UpliftTable, trigger: str, strategy: str, channel: str, persona: str) -> UpliftRow | None:
    """The finest row with enough data that covers this cell (every dimension equal or
    ``*``), falling back to coarser ones; among rows as fine, the first in table order.
    None when no covering row has enough data.

    >>> cell = lambda n: {"trigger": "t", "strategy": {"key": "s"}, "channel": "push",
    ...                   "persona": {"cluster_id": "p"}, "experiment": {"arm": "treatment" if n % 2 else "holdout"},
    ...                   "status": "sent", "reason": None, "corrected": False, "converted": n % 3 == 0,
    ...                   "opened": False, "clicked": False}
    >>> t = summarize([cell(n) for n in range(100)], min_per_arm=30)
    >>> [r.enough for r in t.rows]
    [True, True, True]
    >>> lookup(t, "t", "s", "push", "p").key["persona"], lookup(t, "t", "s", "push", "q").key
    ('p', {'trigger': 't', 'strategy': 's', 'channel': 'push', 'persona': '*', 'mode': '*'})
    >>> lookup(t, "other", "s", "push", "p") is None
    True
    """
    wanted = dict(zip(DIMENSIONS, (trigger, strategy, channel, persona)))
    best: UpliftRow | None = None
    best_fine = -1
    for row in table.rows:
        if not row.enough or any(v != ALL and v != wanted[d] for d, v in row.key.items()):
            continue
        fine = sum(v != ALL for v in row.key.values())
        if fine > best_fine:
            best, best_fine = row, fine
    return best
