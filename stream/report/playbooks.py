"""The playbook of one business domain: the shared part of ``config/playbook.toml`` plus
that domain's ``[domain.<name>]`` table, without the entries whose journeys the data lacks.

The shared part ([vocab], the top-level [[entry]] list) is what
:func:`intentstream.stream.personas.playbook.load_playbook` reads too; a domain's table
replaces vocabulary words (``[domain.<name>.vocab.<field>]``) and adds entries
(``[[domain.<name>.entry]]``), which may name the ``journey`` (or journeys) they are about
(:data:`~intentstream.stream.report.domain.JOURNEYS`). The result is validated by the same
:func:`~intentstream.stream.personas.playbook.parse_playbook`, so every section keeps a
fallback (the shared ones) and is never empty.

>>> from intentstream.stream.report.domain import JOURNEYS
>>> shop = domain_playbook("ecommerce", frozenset(JOURNEYS) - {"kyc"})
>>> shop.vocab.term("behaviour_stage", "transacted", "en"), shop.vocab.term("urgency", "high", "en")
('purchased', 'high urgency')
>>> any("KYC" in line for e in shop.entries for line in e.en)
False
>>> bank = domain_playbook("finance", frozenset({"payment"}))   # no KYC segments in the data
>>> any("KYC" in line for e in bank.entries for line in e.en)
False
>>> any("KYC" in line for e in domain_playbook("finance", frozenset(JOURNEYS)).entries for line in e.en)
True
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from intentstream.stream.personas.playbook import DEFAULT_PLAYBOOK, Playbook, PlaybookError, parse_playbook
from intentstream.stream.report.domain import DOMAINS, JOURNEYS

__all__ = ["domain_playbook"]


@lru_cache(maxsize=8)
def _read(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    unknown = set(data.get("domain", {})) - set(DOMAINS)
    if unknown:
        raise PlaybookError(f"{path}: unknown domain table(s) {sorted(unknown)}; known: {', '.join(DOMAINS)}")
    return data


def _journeys(entry: dict[str, Any], where: str) -> tuple[str, ...]:
    need = entry.get("journey", ())
    need = (need,) if isinstance(need, str) else tuple(need)
    bad = [j for j in need if j not in JOURNEYS]
    if bad:
        raise PlaybookError(f"{where}: unknown journey(s) {bad}; known: {', '.join(JOURNEYS)}")
    return need


@lru_cache(maxsize=32)
def _build(path: str, domain: str, present: frozenset[str]) -> Playbook:
    data = _read(path)
    table = data.get("domain", {}).get(domain, {})
    vocab = {name: dict(values) if isinstance(values, dict) else values for name, values in data.get("vocab", {}).items()}
    for name, values in table.get("vocab", {}).items():
        vocab.setdefault(name, {}).update(values)
    entries = list(data.get("entry", []))
    for i, raw in enumerate(table.get("entry", [])):
        need = _journeys(raw, f"{path}: domain.{domain} entry {i + 1}")
        if all(j in present for j in need):
            entries.append({k: v for k, v in raw.items() if k != "journey"})
    return parse_playbook({"vocab": vocab, "entry": entries}, f"{path} [{domain}]")


def domain_playbook(domain: str, present: frozenset[str], path: str | Path | None = None) -> Playbook:
    """The playbook of ``domain`` for data holding the journeys ``present`` (file: ``path``,
    default ``config/playbook.toml``); built once per path, domain and journeys."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    return _build(str(Path(path or DEFAULT_PLAYBOOK).resolve()), domain, frozenset(present))
