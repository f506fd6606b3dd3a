"""ROI-guard alerts: an arm paused or resumed, on ``ops.alerts``.

The guard itself is a rule of the policy (:meth:`StrategyPolicy.paused
<intentstream.stream.policy.chooser.StrategyPolicy.paused>`); it changes only when a
policy epoch begins (the tally's snapshot moves then), so the engine compares the paused
arms before and after and publishes one record per change, in the shape of the worker's
other alerts (:mod:`intentstream.stream.ops.alerts`), dated at the epoch's start in event
time and keyed by ``<trigger>/<arm>``. The policy learns per partition, so each partition
reports its own view (``worker`` = ``partition:<n>``). Deterministic: replay writes the
same records.

>>> from intentstream.stream.decisions.strategies import load_catalogue
>>> from intentstream.stream.policy.chooser import StrategyPolicy
>>> from intentstream.stream.policy.tally import ArmTally
>>> policy, tally = StrategyPolicy(load_catalogue()), ArmTally()
>>> for i in range(250):
...     tally.add("churn_risk", "winback_coupon", None, converted=i == 0, clicked=False)
>>> before = policy.paused_arms(tally.view()); _ = tally.roll(1)
>>> [(a["alert"], a["subject"], a["status"], a["value"]) for a in roi_alerts(before, policy, tally.view(), 3_600_000, 0)]
[('roi_guard', 'churn_risk/winback_coupon', 'firing', 0.004)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from intentstream.stream.contract.events import format_ts

ALERT: str = "roi_guard"


def roi_alerts(
    before: set[tuple[str, str]], policy: Any, tally: Mapping[str, Sequence[int]], at_ms: int, partition: int
) -> list[dict[str, Any]]:
    """One alert record per arm whose paused state changed (``before`` → now)."""
    now = policy.paused_arms(tally)
    out = []
    threshold = policy.cfg.roi_min_conversion
    for trigger, arm in sorted(now ^ before):
        rate, sends = policy.rate(tally, trigger, arm)
        firing = (trigger, arm) in now
        what = "paused" if firing else "resumed"
        message = (
            f"{trigger}/{arm} {what} on partition {partition}: {rate or 0:.2%} conversion per send "
            f"over {sends:,} sends ({'below' if firing else 'back at or above'} {threshold:.2%})"
        )
        out.append({
            "ts": format_ts(at_ms),
            "worker": f"partition:{partition}",
            "alert": ALERT,
            "subject": f"{trigger}/{arm}",
            "status": "firing" if firing else "resolved",
            "severity": "warning",
            "message": message if firing else f"resolved: {message}",
            "value": round(rate or 0.0, 4),
            "threshold": threshold,
        })  # fmt: skip
    return out
