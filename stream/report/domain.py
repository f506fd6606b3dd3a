"""Which business domain the report speaks in, and which customer journeys the data holds.

The report is built on a persona model, so it reads the journeys from the model's cluster
statistics (:class:`~intentstream.stream.personas.stats.ClusterStats`): the same answer for
a live checkpoint, a segments file and a clickstream. A journey is in the data when at
least ``[report] journey_min_segments`` segments show it (:data:`JOURNEY_SIGNS`):

===========  ==========================================================================
journey      segments that show it
===========  ==========================================================================
browsing     intent browsing (page_view, click, search)
coupon       intent coupon (coupon_view, coupon_claim, coupon_redeem)
purchase     intent purchase (add_to_cart, remove_from_cart, checkout and payment steps)
payment      a transaction status other than not_started: the user has reached
             checkout_start / payment_submit / payment_success / payment_fail
kyc          a KYC status other than not_started: the user has a kyc_* event
account      intent account (login, signup, form_start, form_submit, unsubscribe)
===========  ==========================================================================

:func:`detect_domain`: ``finance`` when the data has the KYC journey (identity
verification exists only in regulated finance apps); else ``ecommerce`` when it has the
purchase or payment journey (carts and checkout without KYC: a shop); else ``general``
(the playbook's shared entries only). ``[report] domain`` set to a domain overrides the
detection (the header then gives both); journeys still decide which entries apply.

Event types outside the contract (say ``transfer`` or ``fee_charged``) are generic
interactions to the sessionizer, so no segment statistic shows them: they cannot be
detected here.

>>> from intentstream.stream.personas.stats import ClusterStats
>>> shop = ClusterStats(0)
>>> for intent, tx in (("browsing", "not_started"), ("purchase", "in_progress"), ("purchase", "completed")):
...     shop.add({"intent": intent, "transaction_status": tx, "kyc_status": "not_started"})
>>> counts = journey_segments([shop])
>>> counts["purchase"], counts["payment"], counts["kyc"]
(2, 2, 0)
>>> detect_domain(counts, 1)
'ecommerce'
>>> shop.add({"intent": "kyc", "kyc_status": "in_progress"})
>>> detect_domain(journey_segments([shop]), 1), detect_domain(journey_segments([shop]), 2)
('finance', 'ecommerce')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from intentstream.stream.personas.stats import ClusterStats
from intentstream.stream.settings import ReportSettings

__all__ = ["DOMAINS", "DOMAIN_SETTINGS", "JOURNEYS", "JOURNEY_SIGNS", "DomainChoice", "choose_domain", "detect_domain", "journey_segments"]

#: Domains the playbook speaks (config/playbook.toml ``[domain.*]``; general: shared only).
DOMAINS: Final = ("ecommerce", "finance", "general")
#: Values of ``[report] domain``.
DOMAIN_SETTINGS: Final = ("auto", *DOMAINS)

#: Each journey and the segments that show it: (status field, values).
JOURNEY_SIGNS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "browsing": ("intent", ("browsing",)),
    "coupon": ("intent", ("coupon",)),
    "purchase": ("intent", ("purchase",)),
    "payment": ("transaction_status", ("in_progress", "completed", "failed")),
    "kyc": ("kyc_status", ("in_progress", "completed", "rejected")),
    "account": ("intent", ("account",)),
}
JOURNEYS: Final = tuple(JOURNEY_SIGNS)

#: Status fields the report lists only when their journey is in the data.
STATUS_JOURNEY: Final = {"kyc_status": "kyc", "transaction_status": "payment"}


def journey_segments(clusters: Iterable[ClusterStats]) -> dict[str, int]:
    """Segments showing each journey (:data:`JOURNEY_SIGNS`), summed over ``clusters``."""
    out = dict.fromkeys(JOURNEYS, 0)
    for st in clusters:
        for journey, (name, values) in JOURNEY_SIGNS.items():
            out[journey] += sum(st.counts.get(name, {}).get(v, 0) for v in values)
    return out


def detect_domain(journeys: Mapping[str, int], min_segments: int) -> str:
    """``finance`` with the KYC journey, else ``ecommerce`` with purchase or payment, else
    ``general`` (a journey counts with at least ``min_segments`` segments)."""
    has = {j for j, n in journeys.items() if n >= max(1, min_segments)}
    if "kyc" in has:
        return "finance"
    if has & {"purchase", "payment"}:
        return "ecommerce"
    return "general"


@dataclass(frozen=True)
class DomainChoice:
    """The report's domain, what the data says, and the journeys it holds."""

    domain: str
    detected: str
    #: True: ``[report] domain`` named the domain; False: detected (auto)
    forced: bool
    journeys: dict[str, int]
    min_segments: int

    @property
    def present(self) -> frozenset[str]:
        """Journeys in the data."""
        return frozenset(j for j, n in self.journeys.items() if n >= max(1, self.min_segments))

    @property
    def absent(self) -> tuple[str, ...]:
        """Journeys not in the data, in :data:`JOURNEYS` order."""
        return tuple(j for j in JOURNEYS if j not in self.present)

    def shows(self, status_field: str) -> bool:
        """Whether the report lists ``status_field`` (False when its journey is absent)."""
        journey = STATUS_JOURNEY.get(status_field)
        return journey is None or journey in self.present


def choose_domain(clusters: Iterable[ClusterStats], cfg: ReportSettings) -> DomainChoice:
    """The report's :class:`DomainChoice` for ``clusters`` under ``[report]`` settings."""
    if cfg.domain not in DOMAIN_SETTINGS:
        raise ValueError(f"unknown [report] domain {cfg.domain!r}; known: {', '.join(DOMAIN_SETTINGS)}")
    journeys = journey_segments(clusters)
    detected = detect_domain(journeys, cfg.journey_min_segments)
    forced = cfg.domain != "auto"
    return DomainChoice(cfg.domain if forced else detected, detected, forced, journeys, cfg.journey_min_segments)
