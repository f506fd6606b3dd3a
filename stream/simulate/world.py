"""The planted world of a simulation: what ``config/simulation.toml`` (and ``--world``)
says, read once into a :class:`World`, and the engine settings a run uses.

The world holds the planted truth — per journey the base conversion (the holdout arm's),
per (trigger, strategy, channel) the effect of a sent message — and everything the users
do: time zones, active hours, episode spacing, the sessions of each journey, how they
react to messages. Every number lives in ``config/simulation.toml``; nothing here has a
default of its own.

Random draws are :func:`unit`: a hash of the seed and the names of what is drawn, so a
draw depends on nothing else (no global random state, no call order).

>>> w = load_world()
>>> w.effect("cart_abandoned", "cart_one_tap_checkout", "in_app"), w.effect("cart_abandoned", "other", "email")
(0.0, 0.1)
>>> w.journeys["kyc_rejected"].base
0.3
>>> 0.0 <= unit(7, "a1", "convert") < 1.0, unit(7, "a1", "convert") == unit(7, "a1", "convert")
(True, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentstream.stream.contract.events import is_known_zone, parse_ts
from intentstream.stream.settings import CONFIG_DIR, Settings, SettingsError, _merge, load_settings, overlay
from intentstream.stream.triggers.rules import ALL_TRIGGERS, CHURN_TRIGGER

#: The simulator's defaults, beside config/default.toml.
SIMULATION_FILE = CONFIG_DIR / "simulation.toml"
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CHANNELS = ("push", "sms", "email", "in_app")


def unit(seed: int, *parts: object) -> float:
    """A uniform draw in [0, 1) from a hash of ``seed`` and ``parts`` (common random numbers)."""
    text = "|".join(map(str, (seed, *parts))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2.0**64


class WorldError(ValueError):
    """A simulation file with a missing, unknown or inconsistent value."""


def _pair(value: Any, name: str, kind: type = int) -> tuple[Any, Any]:
    if not (isinstance(value, list) and len(value) == 2 and value[0] <= value[1]):
        raise WorldError(f"{name} must be [low, high] with low <= high: {value!r}")
    return kind(value[0]), kind(value[1])


def _share(value: Any, name: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise WorldError(f"{name} must be a share between 0 and 1: {value!r}")
    return float(value)


@dataclass(frozen=True)
class Journey:
    """One persona's journey: the trigger it plants and how its users behave."""

    trigger: str
    share: float
    base: float
    history: float
    sessions: tuple[tuple[str, ...], ...]
    #: churn_risk only: days of activity before the silence, [low, high]
    active_days: tuple[int, int] | None = None


@dataclass(frozen=True)
class Reactions:
    """How users answer a message (``[reactions]``)."""

    open: Mapping[str, float]
    click: Mapping[str, float]
    dismiss: Mapping[str, float]
    feedback_delay_s: tuple[int, int]
    click_delay_s: tuple[int, int]
    convert_delay_s: tuple[int, int]
    visit_type: str
    #: P(opened) is multiplied by this when the message arrives outside the user's active hours
    inactive_open_factor: float


@dataclass(frozen=True)
class World:
    """Everything a simulation plants (see ``config/simulation.toml``)."""

    engine: Mapping[str, Any]
    start_ms: int
    zones: tuple[tuple[str, float], ...]
    active_hours: tuple[tuple[int, int, float], ...]
    episode_gap_days: tuple[int, int]
    first_episode_days: int
    event_gap_s: tuple[int, int]
    amount: tuple[float, float]
    step_s: int
    journeys: Mapping[str, Journey]
    effects: Mapping[str, Mapping[str, float]]
    reactions: Reactions
    #: the merged file contents (truth.json repeats its ``[world]`` table)
    source: Mapping[str, Any]

    def effect(self, trigger: str, strategy: str | None, channel: str | None) -> float:
        """The planted effect of a sent message of this cell (the trigger's ``*`` otherwise)."""
        table = self.effects.get(trigger, {})
        return table.get(f"{strategy}/{channel}", table.get("*", 0.0))

    def base(self, trigger: str) -> float:
        """The conversion without a message, for a decision of ``trigger``."""
        journey = self.journeys.get(trigger)
        return journey.base if journey is not None else 0.0

    def zero_cells(self) -> list[tuple[str, str, str]]:
        """The (trigger, strategy, channel) cells planted to do nothing."""
        cells = []
        for trigger, table in self.effects.items():
            for cell, e in table.items():
                if cell != "*" and e == 0.0:
                    strategy, _, channel = cell.partition("/")
                    cells.append((trigger, strategy, channel))
        return cells

    def check(self, settings: Settings) -> None:
        """The spacing rules of ``[world] episode_gap_days`` against the engine's trigger settings."""
        tr, oc = settings.triggers, settings.outcomes
        width_ms = max(hi - lo for lo, hi, _ in self.active_hours) * HOUR_MS
        lo, hi = self.episode_gap_days
        slowest = max(tr.cart_abandon_s, tr.payment_stall_s, tr.kyc_stall_s) * 1000
        window = max(oc.windows_s.get(t, oc.window_s) for t in ALL_TRIGGERS if t != CHURN_TRIGGER) * 1000
        if lo * DAY_MS - width_ms <= slowest + window:
            raise WorldError(f"[world] episode_gap_days low {lo}: episodes could start inside the previous one's attribution window")
        if hi * DAY_MS + width_ms >= tr.churn_silence_s * 1000:
            raise WorldError(f"[world] episode_gap_days high {hi}: users would go silent for churn_silence_s between episodes")
        if self.first_episode_days * DAY_MS + width_ms >= tr.churn_silence_s * 1000:
            raise WorldError("[world] first_episode_days: users would go silent for churn_silence_s before their first episode")
        for trigger, journey in self.journeys.items():
            effects = self.effects.get(trigger, {}).values()
            if effects and not (0.0 <= journey.base + min(effects) and journey.base + max(effects) <= 1.0):
                raise WorldError(f"[journeys.{trigger}] base + every effect of [effects.{trigger}] must stay within [0, 1]")

    def planted(self) -> dict[str, Any]:
        """The planted tables, for truth.json."""
        return {
            "engine": dict(self.engine),
            "world": dict(self.source.get("world", {})),
            "base": {t: j.base for t, j in self.journeys.items()},
            "effects": {t: dict(e) for t, e in self.effects.items()},
            "journeys": {t: {"share": j.share, "history": j.history, "sessions": [list(s) for s in j.sessions]} for t, j in self.journeys.items()},
            "reactions": dataclasses.asdict(self.reactions),
        }


def _read(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise WorldError(f"{path}: {exc}") from exc


def load_world(path: str | Path | None = None, base: str | Path = SIMULATION_FILE) -> World:
    """``config/simulation.toml``, with the file ``path`` (only the keys it changes) over it."""
    data = _read(base)
    if path:
        _merge(data, _read(path))
    try:
        return _world(data)
    except KeyError as exc:
        raise WorldError(f"missing simulation setting {exc.args[0]!r}") from None


def _world(data: Mapping[str, Any]) -> World:
    unknown = set(data) - {"engine", "world", "journeys", "effects", "reactions"}
    if unknown:
        raise WorldError(f"unknown simulation table(s) {sorted(unknown)}")
    w = data["world"]
    zones = tuple((str(z), float(n)) for z, n in w["zones"].items())
    for z, _ in zones:
        if not is_known_zone(z):
            raise WorldError(f"[world] zones: unknown time zone {z!r}")
    hours = tuple((int(a), int(b), float(n)) for a, b, n in w["active_hours"])
    if any(not 0 <= a < b <= a + 24 for a, b, _ in hours):
        raise WorldError(f"[world] active_hours: each must be [from, to, weight] with from < to <= from + 24: {w['active_hours']!r}")
    start = parse_ts(w["start"])
    if not isinstance(start, int):
        raise WorldError(f"[world] start is not ISO-8601 with an offset: {w['start']!r}")
    journeys = {}
    for trigger, j in data["journeys"].items():
        if trigger not in ALL_TRIGGERS:
            raise WorldError(f"[journeys.{trigger}]: not a trigger ({', '.join(ALL_TRIGGERS)})")
        sessions = tuple(tuple(map(str, s)) for s in j["sessions"])
        if not sessions or not all(sessions):
            raise WorldError(f"[journeys.{trigger}] sessions: at least one non-empty session")
        days = _pair(j["active_days"], f"[journeys.{trigger}] active_days") if trigger == CHURN_TRIGGER else None
        journeys[trigger] = Journey(trigger, _share(j["share"], f"[journeys.{trigger}] share"), _share(j["base"], f"[journeys.{trigger}] base"),
                                    _share(j["history"], f"[journeys.{trigger}] history"), sessions, days)  # fmt: skip
    if abs(sum(j.share for j in journeys.values()) - 1.0) > 1e-9:
        raise WorldError("[journeys.*] share must sum to 1")
    effects = {}
    for trigger, table in data["effects"].items():
        if trigger not in ALL_TRIGGERS:
            raise WorldError(f"[effects.{trigger}]: not a trigger")
        if "*" not in table:
            raise WorldError(f"[effects.{trigger}] needs a \"*\" effect")
        effects[trigger] = {str(k): float(v) for k, v in table.items()}
    r = data["reactions"]
    shares = {}
    for name in ("open", "click", "dismiss"):
        shares[name] = {ch: _share(r[name][ch], f"[reactions] {name}.{ch}") for ch in CHANNELS}
    reactions = Reactions(
        shares["open"], shares["click"], shares["dismiss"],
        _pair(r["feedback_delay_s"], "[reactions] feedback_delay_s"), _pair(r["click_delay_s"], "[reactions] click_delay_s"),
        _pair(r["convert_delay_s"], "[reactions] convert_delay_s"), str(r["visit_type"]),
        _share(r["inactive_open_factor"], "[reactions] inactive_open_factor"),
    )  # fmt: skip
    if reactions.convert_delay_s[0] <= 0:
        raise WorldError("[reactions] convert_delay_s must be positive")
    return World(
        engine=dict(data.get("engine", {})),
        start_ms=start,
        zones=zones,
        active_hours=hours,
        episode_gap_days=_pair(w["episode_gap_days"], "[world] episode_gap_days"),
        first_episode_days=int(w["first_episode_days"]),
        event_gap_s=_pair(w["event_gap_s"], "[world] event_gap_s"),
        amount=_pair(w["amount"], "[world] amount", float),
        step_s=int(w["step_s"]),
        journeys=journeys,
        effects=effects,
        reactions=reactions,
        source=data,
    )


def engine_settings(world: World, config: str | Path | None = None) -> Settings:
    """The engine's settings for a run: ``load_settings(config)`` with the world's
    ``[engine]`` tables laid over it (merged and validated as settings files are), and
    the spacing rules checked against them."""
    settings = load_settings(config)
    if world.engine:
        try:
            settings = overlay(settings, world.engine, SIMULATION_FILE)
        except SettingsError as exc:
            raise WorldError(f"[engine] {exc}") from exc
    world.check(settings)
    return settings
