"""The strategy catalogue: per trigger, what to say, on which channels, with which coupon.

``config/strategies.toml`` (its header documents the format) is loaded once into a
:class:`Catalogue`, validated thoroughly (unknown keys, missing languages, placeholders
without a fallback, coupon text without a coupon...), so a bad catalogue fails at start-up
rather than at 3 a.m. on one user's message.

>>> cat = load_catalogue()
>>> choice = cat.choose("cart_abandoned")
>>> choice.strategy.key, choice.group, choice.strategy.channels
('cart_reminder_coupon', 'default', ('push', 'in_app', 'email'))
>>> cat.choose("cart_abandoned", ignored_streak=5).strategy.key      # the regret rule
'cart_recap_email'
>>> cat.choose("cart_abandoned", {"main_activity": "coupon_oriented"}).strategy.key
'cart_bigger_coupon'
>>> content = cat.render(choice.strategy, {"item_id": "SKU-1042"})
>>> content["en"]["body"]
"Your cart still holds SKU-1042. We've kept it for you — check out in under a minute."
>>> content["zh"]["coupon_line"]
'满USD 50立减USD 10，48小时内有效。'
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from intentstream.stream.contract.events import MESSAGE_CHANNELS, format_ts
from intentstream.stream.settings import CONFIG_DIR, default_settings

#: Placeholders filled from the strategy's coupon; allowed in ``coupon_line`` only.
COUPON_PLACEHOLDERS: Final = frozenset({"coupon_value", "coupon_min_spend", "coupon_expiry_hours"})

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMPLATE_FIELDS = ("title", "body", "coupon_line")
_COUPON_FIELDS = {"value", "currency", "expiry_hours", "min_spend", "code_prefix"}
_STRATEGY_FIELDS = {"description", "channels", "link", "coupon"}
_ROUTE_FIELDS = {"default", "alternate", "personas"}
_PERSONA_FIELDS = {"when", "default", "alternate"}


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the offending entry."""


def default_path() -> Path:
    """``config/strategies.toml`` beside ``config/default.toml``."""
    return CONFIG_DIR / "strategies.toml"


def money(value: float, currency: str | None = None) -> str:
    """Money as the templates show it; whole values lose their decimals.

    >>> money(1234.5, "USD"), money(10.0, "USD"), money(7.5)
    ('USD 1,234.50', 'USD 10', '7.50')
    """
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{currency} {text}" if currency else text


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon a strategy attaches: ``value`` off orders of ``min_spend`` or more."""

    value: float
    currency: str
    expiry_hours: int
    min_spend: float = 0.0
    code_prefix: str = "IS"

    def code(self, action_id: str) -> str:
        """Deterministic redemption code: the same action always gets the same code."""
        return f"{self.code_prefix}-{action_id[:10].upper()}"

    def details(self, action_id: str, send_ms: int) -> dict[str, Any]:
        """The coupon as it goes into a decision, expiring ``expiry_hours`` after sending."""
        return {
            "value": self.value,
            "currency": self.currency,
            "min_spend": self.min_spend,
            "expiry_hours": self.expiry_hours,
            "expires_at": format_ts(send_ms + self.expiry_hours * 3_600_000),
            "code": self.code(action_id),
        }

    def facts(self) -> dict[str, str]:
        return {
            "coupon_value": money(self.value, self.currency),
            "coupon_min_spend": money(self.min_spend, self.currency),
            "coupon_expiry_hours": str(self.expiry_hours),
        }


@dataclass(frozen=True, slots=True)
class Template:
    """One language's texts; ``coupon_line`` is shown only with a granted coupon."""

    title: str
    body: str
    coupon_line: str | None = None


@dataclass(frozen=True, slots=True)
class Strategy:
    key: str
    channels: tuple[str, ...]
    templates: Mapping[str, Template]
    coupon: Coupon | None = None
    link: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class PersonaRoute:
    """Override for personas whose attributes include every pair of ``when``."""

    when: Mapping[str, str]
    default: str | None = None
    alternate: str | None = None

    def matches(self, attrs: Mapping[str, str]) -> bool:
        return all(attrs.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True, slots=True)
class Route:
    trigger: str
    default: str
    alternate: str
    personas: tuple[PersonaRoute, ...] = ()


@dataclass(frozen=True, slots=True)
class Choice:
    """A chosen strategy; ``group`` is ``default`` or ``alternate`` (after the regret
    rule); ``persona_rule`` is the index of the persona override used, if any."""

    strategy: Strategy
    group: str
    persona_rule: int | None = None


@dataclass(frozen=True, slots=True)
class Catalogue:
    languages: tuple[str, ...]
    placeholders: Mapping[str, Mapping[str, str]]
    triggers: Mapping[str, Route]
    strategies: Mapping[str, Strategy]

    def choose(
        self,
        trigger: str,
        persona: Mapping[str, str] | None = None,
        ignored_streak: int = 0,
        regret_streak: int | None = None,
    ) -> Choice:
        """The strategy for a trigger hit.

        ``persona`` holds persona attributes (``behaviour_stage``, ``main_activity``...); the first
        persona override whose ``when`` they match replaces the trigger's default and/or
        alternate. After ``regret_streak`` consecutive ignored messages (``ignored_streak``)
        the alternate is used (None: ``[strategies] regret_streak`` of
        :func:`~intentstream.stream.settings.default_settings`).
        """
        if regret_streak is None:
            regret_streak = default_settings().strategies.regret_streak
        route = self.triggers.get(trigger)
        if route is None:
            raise KeyError(f"trigger {trigger!r} is not in the strategy catalogue")
        group = "alternate" if ignored_streak >= regret_streak > 0 else "default"
        key = route.alternate if group == "alternate" else route.default
        rule = None
        if persona:
            for i, pr in enumerate(route.personas):
                if pr.matches(persona):
                    override = pr.alternate if group == "alternate" else pr.default
                    if override:
                        key, rule = override, i
                    break
        return Choice(self.strategies[key], group, rule)

    def render(
        self, strategy: Strategy, facts: Mapping[str, Any] | None = None
    ) -> dict[str, dict[str, str | None]]:
        """Every language's title, body and coupon line with placeholders filled.

        ``facts`` come from the trigger (``amount``, ``currency``, ``item_id``,
        ``category``...); missing ones use the language's placeholder text.
        """
        values = _fact_texts(facts or {})
        if strategy.coupon:
            values.update(strategy.coupon.facts())
        out: dict[str, dict[str, str | None]] = {}
        for lang in self.languages:
            tpl = strategy.templates[lang]
            ctx = {**self.placeholders.get(lang, {}), **values}
            out[lang] = {
                "title": _fill(tpl.title, ctx),
                "body": _fill(tpl.body, ctx),
                "coupon_line": None if tpl.coupon_line is None else _fill(tpl.coupon_line, ctx),
            }
        return out


def _fact_texts(facts: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in facts.items():
        if value is None or name == "currency":
            continue
        if name == "amount" and isinstance(value, (int, float)):
            out[name] = money(float(value), facts.get("currency"))
        else:
            out[name] = str(value)
    return out


def _fill(template: str, ctx: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: ctx[m.group(1)], template)


# --------------------------------------------------------------------------- loading


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate a catalogue file (default: :func:`default_path`)."""
    path = Path(path) if path else default_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    return parse_catalogue(data, str(path))


def catalogue_from_settings(settings) -> Catalogue:  # settings: intentstream.stream.settings.Settings
    return load_catalogue(settings.strategies.catalogue or None)


def parse_catalogue(data: Mapping[str, Any], where: str = "catalogue") -> Catalogue:
    """Validate an already-parsed catalogue (see ``config/strategies.toml``)."""
    _only(data, {"languages", "placeholders", "triggers", "strategies"}, where)
    languages = data.get("languages")
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise CatalogueError(f"{where}: languages must be a non-empty list of language codes")
    langs = tuple(languages)

    placeholders: dict[str, dict[str, str]] = {}
    raw_ph = _table(data.get("placeholders", {}), f"{where}: placeholders")
    for lang in langs:
        table = _table(raw_ph.get(lang, {}), f"{where}: placeholders.{lang}")
        for k, v in table.items():
            if not isinstance(v, str):
                raise CatalogueError(f"{where}: placeholders.{lang}.{k} must be a string")
        placeholders[lang] = dict(table)

    strategies: dict[str, Strategy] = {}
    for key, raw in _table(data.get("strategies"), f"{where}: strategies").items():
        strategies[key] = _strategy(key, raw, langs, placeholders, f"{where}: strategies.{key}")

    triggers: dict[str, Route] = {}
    for trig, raw in _table(data.get("triggers"), f"{where}: triggers").items():
        triggers[trig] = _route(trig, raw, strategies, f"{where}: triggers.{trig}")
    return Catalogue(langs, placeholders, triggers, strategies)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {sorted(unknown)}")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CatalogueError(f"{where} must be a table")
    return value


def _str(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise CatalogueError(f"{where} must be a non-empty string")
    return value


def _strategy(
    key: str, raw: Any, langs: tuple[str, ...], placeholders: Mapping[str, Mapping[str, str]], where: str
) -> Strategy:
    raw = _table(raw, where)
    _only(raw, _STRATEGY_FIELDS | set(langs), where)
    channels = raw.get("channels")
    if not isinstance(channels, list) or not channels:
        raise CatalogueError(f"{where}.channels must be a non-empty list")
    for ch in channels:
        if ch not in MESSAGE_CHANNELS:
            raise CatalogueError(f"{where}.channels: {ch!r} is not one of {sorted(MESSAGE_CHANNELS)}")
    if len(set(channels)) != len(channels):
        raise CatalogueError(f"{where}.channels lists a channel twice")
    coupon = _coupon(raw["coupon"], f"{where}.coupon") if "coupon" in raw else None
    templates: dict[str, Template] = {}
    for lang in langs:
        tw = f"{where}.{lang}"
        tr = _table(raw.get(lang), tw)
        _only(tr, set(_TEMPLATE_FIELDS), tw)
        title = _str(tr.get("title"), f"{tw}.title")
        body = _str(tr.get("body"), f"{tw}.body")
        line = _str(tr.get("coupon_line"), f"{tw}.coupon_line", optional=True)
        if coupon is None and line is not None:
            raise CatalogueError(f"{tw}.coupon_line given but the strategy has no coupon")
        if coupon is not None and line is None:
            raise CatalogueError(f"{tw}.coupon_line missing: the strategy has a coupon")
        known = set(placeholders.get(lang, {}))
        for name, text in (("title", title), ("body", body), ("coupon_line", line)):
            for ph in _PLACEHOLDER.findall(text or ""):
                allowed = known | COUPON_PLACEHOLDERS if name == "coupon_line" else known
                if ph not in allowed:
                    hint = " (coupon placeholders belong in coupon_line)" if ph in COUPON_PLACEHOLDERS else ""
                    raise CatalogueError(f"{tw}.{name}: placeholder {{{ph}}} has no placeholders.{lang} text{hint}")
        assert title is not None and body is not None
        templates[lang] = Template(title, body, line)
    link = _str(raw.get("link"), f"{where}.link", optional=True)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise CatalogueError(f"{where}.description must be a string")
    return Strategy(key, tuple(channels), templates, coupon, link, description)


def _coupon(raw: Any, where: str) -> Coupon:
    raw = _table(raw, where)
    _only(raw, _COUPON_FIELDS, where)
    value, hours, min_spend = raw.get("value"), raw.get("expiry_hours"), raw.get("min_spend", 0)
    if type(value) not in (int, float) or value <= 0:
        raise CatalogueError(f"{where}.value must be a number > 0")
    if type(hours) is not int or hours <= 0:
        raise CatalogueError(f"{where}.expiry_hours must be an integer > 0")
    if type(min_spend) not in (int, float) or min_spend < 0:
        raise CatalogueError(f"{where}.min_spend must be a number >= 0")
    currency = _str(raw.get("currency"), f"{where}.currency")
    prefix = _str(raw.get("code_prefix", "IS"), f"{where}.code_prefix")
    assert currency is not None and prefix is not None
    return Coupon(float(value), currency, hours, float(min_spend), prefix)


def _route(trigger: str, raw: Any, strategies: Mapping[str, Strategy], where: str) -> Route:
    raw = _table(raw, where)
    _only(raw, _ROUTE_FIELDS, where)

    def ref(value: Any, label: str, optional: bool = False) -> str | None:
        key = _str(value, label, optional=optional)
        if key is not None and key not in strategies:
            raise CatalogueError(f"{label}: no strategy named {key!r}")
        return key

    default = ref(raw.get("default"), f"{where}.default")
    alternate = ref(raw.get("alternate"), f"{where}.alternate")
    personas = []
    rules = raw.get("personas", [])
    if not isinstance(rules, list):
        raise CatalogueError(f"{where}.personas must be an array of tables ([[...personas]])")
    for i, pr in enumerate(rules):
        pw = f"{where}.personas[{i}]"
        pr = _table(pr, pw)
        _only(pr, _PERSONA_FIELDS, pw)
        when = _table(pr.get("when"), f"{pw}.when")
        if not when or not all(isinstance(v, str) for v in when.values()):
            raise CatalogueError(f"{pw}.when must map persona attributes to strings")
        d, a = ref(pr.get("default"), f"{pw}.default", True), ref(pr.get("alternate"), f"{pw}.alternate", True)
        if d is None and a is None:
            raise CatalogueError(f"{pw}: give a default and/or an alternate")
        personas.append(PersonaRoute(dict(when), d, a))
    assert default is not None and alternate is not None
    return Route(trigger, default, alternate, tuple(personas))
