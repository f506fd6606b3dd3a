"""What the clickstream generator is asked for (:class:`GeneratorConfig`) and what one
generation counted (:class:`GenerationStats`).

The ground-truth windows of the config are the default trigger rules (``config/default.toml``);
the generator plants its journeys so that they hold under those rules.

>>> cfg = GeneratorConfig(users=3, days=2)
>>> cfg.end_ms - cfg.start_ms == 2 * DAY_MS
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from intentstream.stream.contract.events import parse_ts
from intentstream.stream.settings import default_settings

#: Share of users per persona (sums to 1).
DEFAULT_MIX: Final[dict[str, float]] = {
    "explorer": 0.18,
    "coupon_hunter": 0.10,
    "buyer_complete": 0.13,
    "cart_abandoner": 0.10,
    "payment_failer": 0.07,
    "kyc_finisher": 0.08,
    "kyc_staller": 0.07,
    "kyc_rejected": 0.04,
    "churner": 0.09,
    "night_owl": 0.08,
    "unsubscriber": 0.06,
}
#: The persona names, in the order of :data:`DEFAULT_MIX`.
PERSONAS: Final = tuple(DEFAULT_MIX)

#: Output orders: delivery order, or grouped by user (stable by delivery order within a user).
ORDERS: Final = ("time", "user")

# Units of the synthetic timeline (epoch milliseconds).
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Same config, same output, byte for byte."""

    users: int = 1000
    days: int = 7
    seed: int = 0
    #: First instant of the window, ISO-8601 with an offset.
    start: str = "2026-01-05T00:00:00Z"
    late_share: float = 0.02
    duplicate_share: float = 0.01
    invalid_share: float = 0.0
    # Real-world delivery (:mod:`~intentstream.stream.synth.realworld`), all off by default.
    #: Share of events uploaded again later with a new event id (same ts and content).
    retry_share: float = 0.0
    #: Share of sessions whose phone events reach the collector hours later, in one burst.
    flush_share: float = 0.0
    #: How much later a flushed burst arrives (hours, lowest and highest).
    flush_hours: tuple[float, float] = (1.0, 48.0)
    #: Share of sessions that continue on a second device (with its own clock skew).
    cross_device_share: float = 0.0
    #: Output order: ``time`` (delivery order) or ``user`` (a dump grouped by user id).
    order: str = "time"
    #: Persona shares; defaults to :data:`DEFAULT_MIX`.
    mix: tuple[tuple[str, float], ...] = tuple(DEFAULT_MIX.items())
    # The trigger rules the ground truth follows (seconds); by default the defaults
    # file's (``[triggers]``, ``[sessions] allowed_lateness_s``), never copied here.
    cart_window_s: int = field(default_factory=lambda: default_settings().triggers.cart_abandon_s)
    payment_window_s: int = field(default_factory=lambda: default_settings().triggers.payment_stall_s)
    kyc_window_s: int = field(default_factory=lambda: default_settings().triggers.kyc_stall_s)
    churn_silence_s: int = field(default_factory=lambda: default_settings().triggers.churn_silence_s)
    #: Late events up to this delay are "within allowed lateness"; the rest are too late.
    allowed_lateness_s: int = field(default_factory=lambda: default_settings().sessions.allowed_lateness_s)
    #: Minimum silence between two sessions of one user (> inactivity gap and cart window).
    session_gap_s: int = 2400

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ValueError("users and days must be at least 1")
        for name in ("late_share", "duplicate_share", "invalid_share", "retry_share", "flush_share", "cross_device_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.late_share + self.duplicate_share > 1.0:
            raise ValueError("late_share + duplicate_share must not exceed 1")
        lo, hi = self.flush_hours
        if not 0 < lo <= hi:
            raise ValueError(f"flush_hours must be 0 < lowest <= highest: {lo}-{hi}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}: {self.order!r}")
        if not isinstance(parse_ts(self.start), int):
            raise ValueError(f"start is not ISO-8601 with an offset: {self.start!r}")
        unknown = [name for name, _ in self.mix if name not in PERSONAS]
        if unknown:
            raise ValueError(f"unknown persona(s) {unknown}; known: {', '.join(PERSONAS)}")
        if self.session_gap_s <= max(self.cart_window_s, self.payment_window_s):
            raise ValueError("session_gap_s must exceed the cart and payment windows")

    @property
    def start_ms(self) -> int:
        ms = parse_ts(self.start)
        assert isinstance(ms, int)
        return ms

    @property
    def end_ms(self) -> int:
        """End of the window (exclusive); no event is at or after it."""
        return self.start_ms + self.days * DAY_MS


@dataclass
class GenerationStats:
    """Counters of one generation, filled while its lines are consumed.

    With ``collect_truth=True`` the per-user ground truth is kept too (one small dict per
    user), so a single pass can write both the stream and the truth file.
    """

    collect_truth: bool = False
    users: int = 0
    lines: int = 0
    events: int = 0
    late: int = 0
    very_late: int = 0
    duplicates: int = 0
    invalid: int = 0
    #: Real-world delivery: retried uploads (extra lines), offline bursts and the events
    #: they carried, sessions continued on a second device.
    retries: int = 0
    flushes: int = 0
    flushed: int = 0
    cross_device: int = 0
    #: Set from the config: the real-world modes that are on, and the output order.
    realworld: bool = False
    order: str = "time"
    personas: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)
    truth: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def truth_records(self) -> list[dict[str, Any]]:
        """The collected ground truth, sorted by user id."""
        return [self.truth[i] for i in sorted(self.truth)]

    def realworld_summary(self) -> str:
        """The real-world delivery line of :meth:`summary` (empty when every mode is off)."""
        if not self.realworld and self.order == "time":
            return ""
        return (
            f"real-world delivery: {self.retries} retried uploads (new ids), {self.flushes} offline flushes "
            f"({self.flushed} events), {self.cross_device} cross-device sessions; order: {self.order}\n"
        )

    def summary(self) -> str:
        personas = ", ".join(f"{name} {n}" for name, n in self.personas.items())
        journeys = ", ".join(f"{name} {n}" for name, n in sorted(self.journeys.items()))
        return (
            f"{self.lines} lines: {self.events} events, {self.late} late ({self.very_late} beyond allowed lateness), "
            f"{self.duplicates} duplicates, {self.invalid} invalid\n"
            f"{self.realworld_summary()}"
            f"{self.users} users: {personas}\n"
            f"journeys: {journeys or 'none'}"
        )
