"""The persona playbook (``config/playbook.toml``): label vocabulary and strategy texts.

:func:`load_playbook` reads and validates the file once (cached per path). A
:class:`Playbook` has the :class:`Vocabulary` that renders cluster labels in zh and en,
and the strategy entries the report picks per cluster with :meth:`Playbook.select`:
entries whose conditions hold for the cluster, highest priority first, at most
``[personas] playbook_max_entries`` per section, and the section's fallback entry when
none applies, so a section is never empty.

>>> pb = load_playbook()
>>> pb.vocab.term("kyc_status", "in_progress", "zh"), pb.vocab.term("urgency", "high", "en")
('已开始', 'high urgency')
>>> pb.vocab.term("behaviour_stage", "browsing_deeply", "en")  # unknown values stay readable
'browsing deeply'

Selection works on anything with ``dominant(field) -> (value, share)`` and
``share(field, value) -> float``, such as :class:`intentstream.stream.personas.stats.ClusterStats`:

>>> class Stats:
...     d = {"transaction_status": {"in_progress": 0.7, "completed": 0.3}}
...     def dominant(self, f):
...         return max(self.d.get(f, {"unknown": 0.0}).items(), key=lambda kv: kv[1])
...     def share(self, f, v):
...         return self.d.get(f, {}).get(v, 0.0)
>>> pb.lines("marketing", Stats(), "en")[0]
'[Transaction in progress] users are mid-transaction and need help finishing'
>>> all(pb.lines(s, Stats(), "zh") for s in SECTIONS)
True
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Mapping, Protocol

from intentstream.stream.settings import CONFIG_DIR, PersonaSettings, default_settings

DEFAULT_PLAYBOOK: Final = CONFIG_DIR / "playbook.toml"
#: Strategy sections, in report order.
SECTIONS: Final = ("marketing", "content", "conversion", "price", "recommendation", "campaigns")
#: Status fields an entry's ``when`` may test.
CONDITION_FIELDS: Final = (
    "kyc_status", "transaction_status", "main_activity", "lifecycle_stage", "urgency", "behaviour_stage",
)  # fmt: skip
LANGS: Final = ("zh", "en")


class PlaybookError(ValueError):
    """The playbook file is malformed (unknown section or field, missing text or fallback)."""


class StatusProfile(Protocol):
    def dominant(self, name: str) -> tuple[str, float]: ...

    def share(self, name: str, value: str) -> float: ...


@dataclass(frozen=True)
class Entry:
    """One playbook entry: lines for one section when every condition holds."""

    section: str
    when: tuple[tuple[str, tuple[str, ...]], ...]
    priority: int
    zh: tuple[str, ...]
    en: tuple[str, ...]
    fallback: bool = False
    index: int = 0

    def strength(self, profile: StatusProfile, min_share: float) -> float | None:
        """How strongly the entry applies (the weakest condition's share), or None."""
        weakest = 1.0
        for name, values in self.when:
            dom = profile.dominant(name)[0]
            best = max((1.0 if v == dom else profile.share(name, v)) for v in values)
            if best < min_share:
                return None
            weakest = min(weakest, best)
        return weakest

    def text(self, lang: str) -> tuple[str, ...]:
        return self.zh if lang == "zh" else self.en


class Vocabulary:
    """zh/en words for status values, the label separator and the word for "cluster"."""

    def __init__(self, terms: Mapping[str, Mapping[str, Mapping[str, str]]], separator: Mapping[str, str], cluster: Mapping[str, str]):
        self.terms = {f: {v: dict(t) for v, t in vals.items()} for f, vals in terms.items()}
        self._separator = dict(separator)
        self._cluster = dict(cluster)

    def term(self, field: str, value: str, lang: str) -> str:
        t = self.terms.get(field, {}).get(value)
        if t and lang in t:
            return t[lang]
        return value.replace("_", " ")

    def separator(self, lang: str) -> str:
        return self._separator.get(lang, " · ")

    def cluster_word(self, lang: str) -> str:
        return self._cluster.get(lang, "Cluster")


class Playbook:
    def __init__(self, vocab: Vocabulary, entries: list[Entry]):
        self.vocab = vocab
        self.entries = entries

    def select(self, section: str, profile: StatusProfile, cfg: PersonaSettings | None = None) -> list[Entry]:
        """The entries of ``section`` for a cluster; the fallback entries when none applies.
        ``cfg``: ``[personas] playbook_min_share`` and ``playbook_max_entries`` (default:
        :func:`~intentstream.stream.settings.default_settings`)."""
        cfg = cfg or default_settings().personas
        scored = []
        for e in self.entries:
            if e.section != section or e.fallback:
                continue
            s = e.strength(profile, cfg.playbook_min_share)
            if s is not None:
                scored.append((-e.priority, -s, e.index, e))
        chosen = [e for *_, e in sorted(scored)[: max(1, cfg.playbook_max_entries)]]
        return chosen or [e for e in self.entries if e.section == section and e.fallback]

    def lines(self, section: str, profile: StatusProfile, lang: str, cfg: PersonaSettings | None = None) -> list[str]:
        """The text lines of :meth:`select`, duplicates removed, in order."""
        out: list[str] = []
        for e in self.select(section, profile, cfg):
            for line in e.text(lang):
                if line not in out:
                    out.append(line)
        return out


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise PlaybookError(f"{where}: expected a non-empty list of non-empty strings")
    return tuple(value)


def parse_playbook(data: Mapping[str, Any], source: str = "playbook") -> Playbook:
    """Validate a decoded playbook; raises :class:`PlaybookError` naming the bad part."""
    raw_vocab = dict(data.get("vocab", {}))
    separator = raw_vocab.pop("separator", {"zh": "·", "en": " · "})
    cluster = raw_vocab.pop("cluster", {"zh": "聚类", "en": "Cluster"})
    for name, table in raw_vocab.items():
        for value, t in table.items():
            if not isinstance(t, Mapping) or set(t) != set(LANGS):
                raise PlaybookError(f"{source}: vocab.{name}.{value} needs exactly zh and en")
    entries = []
    for i, raw in enumerate(data.get("entry", [])):
        where = f"{source}: entry {i + 1}"
        section = raw.get("section")
        if section not in SECTIONS:
            raise PlaybookError(f"{where}: section {section!r} is not one of {', '.join(SECTIONS)}")
        unknown = set(raw) - {"section", "when", "priority", "zh", "en", "fallback"}
        if unknown:
            raise PlaybookError(f"{where}: unknown key(s) {sorted(unknown)}")
        when = []
        for name, values in dict(raw.get("when", {})).items():
            if name not in CONDITION_FIELDS:
                raise PlaybookError(f"{where}: condition on {name!r}; known: {', '.join(CONDITION_FIELDS)}")
            vals = _strings(values, f"{where}: when.{name}")
            known = raw_vocab.get(name)
            if known and set(vals) - set(known):
                raise PlaybookError(f"{where}: when.{name} has unknown value(s) {sorted(set(vals) - set(known))}")
            when.append((name, vals))
        zh, en = _strings(raw.get("zh"), f"{where}: zh"), _strings(raw.get("en"), f"{where}: en")
        if len(zh) != len(en):
            raise PlaybookError(f"{where}: zh has {len(zh)} lines, en has {len(en)}")
        fallback = bool(raw.get("fallback", False))
        if fallback and when:
            raise PlaybookError(f"{where}: a fallback entry has no conditions")
        entries.append(Entry(section, tuple(when), int(raw.get("priority", 0)), zh, en, fallback, i))
    missing = [s for s in SECTIONS if not any(e.section == s and e.fallback for e in entries)]
    if missing:
        raise PlaybookError(f"{source}: no fallback entry for section(s) {', '.join(missing)}")
    return Playbook(Vocabulary(raw_vocab, separator, cluster), entries)


@lru_cache(maxsize=8)
def _load(path: str) -> Playbook:
    with open(path, "rb") as fh:
        return parse_playbook(tomllib.load(fh), path)


def load_playbook(path: str | Path | None = None) -> Playbook:
    """The playbook at ``path`` (default ``config/playbook.toml``), parsed once per path."""
    return _load(str(Path(path or DEFAULT_PLAYBOOK).resolve()))
