"""The persona report speaks the data's domain: e-commerce or finance playbook, detected
from the journeys the data holds or set by ``[report] domain``; no strategy about a
journey the data lacks; user, segment and event counts that add up."""

from __future__ import annotations

import random
import re
from functools import lru_cache

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.playbook import DEFAULT_PLAYBOOK, SECTIONS, PlaybookError
from intentstream.stream.report.domain import DOMAINS, JOURNEYS, detect_domain
from intentstream.stream.report.html import render_html
from intentstream.stream.report.markdown import render_markdown
from intentstream.stream.report.model import Report, build_report
from intentstream.stream.report.playbooks import domain_playbook
from intentstream.stream.report.sources import segments_from_clickstream
from intentstream.stream.settings import PersonaSettings, ReportSettings, Settings

T0 = 1767607200000  # 2026-01-05T10:00:00Z

#: What a shop's report must never say (KYC, identity verification, fees and their waivers).
FINANCE_WORDS = re.compile(r"KYC|身份验证|手续费|费率|\bfees?\b|waive", re.I)


@lru_cache(maxsize=None)
def _shop_trace(users: int = 60, seed: int = 3) -> tuple[bytes, ...]:
    """A small synthetic e-commerce clickstream: product views, coupons, carts, checkout and
    payments, no KYC at all; events in time order."""
    rnd = random.Random(seed)
    events = []
    for u in range(users):
        t = T0 + u * 7_000
        for _ in range(rnd.randint(1, 3)):
            r = rnd.random()
            steps = ["page_view"] * rnd.randint(2, 6)
            steps += ["coupon_view", "coupon_claim"] if r < 0.3 else []
            steps += ["add_to_cart"] * rnd.randint(1, 2) if r > 0.4 else []
            steps += ["checkout_start"] if r > 0.6 else []
            steps += ["payment_success" if r > 0.7 else "payment_fail"] if r > 0.65 else []
            for typ in steps:
                t += rnd.randint(10, 90) * 1000
                ev = {"event_id": f"e{len(events)}", "user_id": f"shopper{u}", "ts": t, "type": typ, "item_id": f"sku{rnd.randint(1, 40)}"}
                if typ == "payment_success":
                    ev["amount"] = float(rnd.randint(20, 400))
                events.append(ev)
            t += 3 * 3_600_000  # the next visit, after the inactivity gap
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return tuple(codec.dumps(e) for e in events)


@lru_cache(maxsize=None)
def _generated_trace() -> tuple[bytes, ...]:
    """The default generator's clickstream (``intentstream generate``: KYC, payments, coupons)."""
    from intentstream.stream.synth.clickstream import generate_lines
    from intentstream.stream.synth.config import GeneratorConfig

    return tuple(line.rstrip(b"\n") for line in generate_lines(GeneratorConfig(users=80, days=2, seed=5)))


def _learn(lines: tuple[bytes, ...]) -> PersonaModel:
    model = PersonaModel(PersonaSettings.defaults(n_clusters=6))
    for seg in segments_from_clickstream(enumerate(lines, 1), Settings.defaults()):
        model.learn_one(seg)
    return model


@lru_cache(maxsize=None)
def _shop_model() -> PersonaModel:
    return _learn(_shop_trace())


@lru_cache(maxsize=None)
def _finance_model() -> PersonaModel:
    return _learn(_generated_trace())


AUTO = ReportSettings.defaults(domain="auto")


def _everything(rep: Report) -> str:
    return render_markdown(rep) + render_html(rep)


def _advice(rep: Report) -> str:
    """Both renderings without the header lines that name the journeys the data lacks."""
    text = _everything(rep)
    for line in rep.domain_lines():
        text = text.replace(line, "")
    return text


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_shop_without_kyc_gets_an_ecommerce_report_without_kyc_or_fees(lang):
    rep = build_report(_shop_model(), lang=lang, min_users=0, settings=AUTO)
    assert (rep.domain.domain, rep.domain.detected, rep.domain.forced) == ("ecommerce", "ecommerce", False)
    assert "kyc" not in rep.domain.present and {"purchase", "payment", "coupon"} <= rep.domain.present
    text = _everything(rep)
    assert not FINANCE_WORDS.search(_advice(rep)), FINANCE_WORDS.search(_advice(rep))
    header = render_markdown(rep).split("## ", 1)[0]
    if lang == "en":
        assert "Domain: e-commerce (detected from the data:" in header
        assert "no KYC record" in header and "Not in the data: KYC identity verification" in header
        assert "Order status" in text and "Transaction status" not in text
    else:
        assert "业务领域：电商（按数据自动识别：" in header and "没有KYC记录" in header
        assert "数据中没有：KYC身份验证" in header
    for c in rep.clusters:
        assert [s.key for s in c.strategies] == list(SECTIONS) and all(s.lines for s in c.strategies)
        assert not any(name in ("KYC status", "KYC状态") for name, _ in c.features)


def test_the_generated_trace_is_finance():
    rep = build_report(_finance_model(), lang="en", min_users=0, settings=AUTO)
    assert (rep.domain.domain, rep.domain.forced) == ("finance", False)
    assert rep.domain.journeys["kyc"] > 0 and set(JOURNEYS) == rep.domain.present
    md = render_markdown(rep)
    assert f"Domain: finance (detected from the data: {rep.domain.journeys['kyc']} segments of users with a KYC record)" in md
    assert "KYC" in md.split("## Cluster ", 1)[1]  # KYC advice where the data has KYC
    assert "Not in the data" not in md


def test_detection_rules():
    none = dict.fromkeys(JOURNEYS, 0)
    assert detect_domain({**none, "browsing": 9}, 1) == "general"
    assert detect_domain({**none, "browsing": 9, "payment": 1}, 1) == "ecommerce"
    assert detect_domain({**none, "purchase": 3, "kyc": 1}, 1) == "finance"
    assert detect_domain({**none, "purchase": 3, "kyc": 1}, 2) == "ecommerce"  # below journey_min_segments


def test_browsing_only_data_gets_the_shared_playbook():
    lines = tuple(line for line in _shop_trace() if b'"page_view"' in line)
    rep = build_report(_learn(lines), lang="en", min_users=0, settings=AUTO)
    assert rep.domain.domain == "general" and rep.domain.present == {"browsing"}
    text = _everything(rep)
    assert "Domain: general (detected from the data: no purchase, checkout/payment or KYC records)" in text
    assert not FINANCE_WORDS.search(_advice(rep))
    assert all(s.lines for c in rep.clusters for s in c.strategies)


# --------------------------------------------------------------------------- the setting


def test_the_setting_overrides_detection_but_never_invents_a_journey():
    rep = build_report(_shop_model(), lang="en", min_users=0, settings=ReportSettings.defaults(domain="finance"))
    assert (rep.domain.domain, rep.domain.detected, rep.domain.forced) == ("finance", "ecommerce", True)
    md = render_markdown(rep)
    assert "Domain: finance (set by [report] domain; the data looks like e-commerce:" in md
    assert "Transaction status" in md and "Order status" not in md  # finance words
    assert "KYC" not in md.split("## Clusters at a glance", 1)[1]  # still no KYC journey in the data
    bank_as_shop = build_report(_finance_model(), lang="en", min_users=0, settings=ReportSettings.defaults(domain="ecommerce"))
    assert (bank_as_shop.domain.domain, bank_as_shop.domain.detected) == ("ecommerce", "finance")
    assert not re.search(r"\bfees?\b|waive", render_markdown(bank_as_shop))


def test_the_setting_reaches_the_report_from_the_environment(monkeypatch):
    monkeypatch.setenv("INTENTSTREAM_REPORT__DOMAIN", "finance")
    assert build_report(_shop_model(), lang="en", min_users=0).domain.forced
    monkeypatch.setenv("INTENTSTREAM_REPORT__DOMAIN", "bank")
    with pytest.raises(ValueError, match="unknown \\[report\\] domain 'bank'"):
        build_report(_shop_model(), lang="en")


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("model", [_shop_model, _finance_model], ids=["shop", "finance"])
def test_user_segment_and_event_counts_add_up(model):
    m = model()
    rep = build_report(m, lang="en", settings=AUTO)  # default threshold: some clusters folded
    every = rep.clusters + rep.small
    assert sum(c.users for c in every) == rep.users == len(m.users)
    assert sum(c.segments for c in every) == rep.segments == m.segments_seen
    assert sum(c.events for c in every) == rep.events
    for c in every:
        assert c.unique_users >= c.users  # members all have segments here
        assert sum(1 for cid in m.users.values() if cid == c.cluster_id) == c.users
    md = render_markdown(rep)
    assert f"Data: {rep.users} users, {rep.segments} intent segments, {rep.events} events in {len(every)} clusters" in md
    rows = [line.split("|")[1:-1] for line in md.split("## Clusters at a glance", 1)[1].split("\n---\n", 1)[0].splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [sum(int(r[i]) for r in rows) for i in (2, 4, 5)] == [rep.users, rep.segments, rep.events]
    for c in rep.clusters:
        lines = rep.key_lines(c)
        assert lines[0] == f"Users: {c.users} (users whose current persona is this cluster)"
        assert lines[1] == f"Users with any segment here: {c.unique_users} = these {c.users} + {c.unique_users - c.users} whose current persona is another cluster"


def test_events_are_every_event_of_the_input():
    rep = build_report(_shop_model(), lang="zh", settings=AUTO)
    assert rep.events == len(_shop_trace())
    assert f"{rep.users} 个用户，{rep.segments} 个意图片段，{rep.events} 个事件" in render_markdown(rep)


# --------------------------------------------------------------------------- playbooks


def test_every_domain_playbook_fills_every_section_with_or_without_journeys():
    class Nothing:
        def dominant(self, name):
            return ("unheard_of", 1.0)

        def share(self, name, value):
            return 0.0

    for domain in DOMAINS:
        for present in (frozenset(), frozenset(JOURNEYS)):
            pb = domain_playbook(domain, present)
            for key in SECTIONS:
                assert pb.lines(key, Nothing(), "zh") and pb.lines(key, Nothing(), "en")
    shop = domain_playbook("ecommerce", frozenset(JOURNEYS))
    assert not any(FINANCE_WORDS.search(line) for e in shop.entries for line in (*e.zh, *e.en))


def test_domain_tables_are_validated(tmp_path):
    base = DEFAULT_PLAYBOOK.read_text(encoding="utf-8")
    bad_journey = tmp_path / "journey.toml"
    bad_journey.write_text(base.replace('\njourney = "kyc"', '\njourney = "astrology"', 1), encoding="utf-8")
    with pytest.raises(PlaybookError, match="unknown journey"):
        domain_playbook("finance", frozenset(JOURNEYS), bad_journey)
    bad_domain = tmp_path / "domain.toml"
    bad_domain.write_text(base.replace("[[domain.finance.entry]]", "[[domain.casino.entry]]"), encoding="utf-8")
    with pytest.raises(PlaybookError, match="unknown domain"):
        domain_playbook("finance", frozenset(JOURNEYS), bad_domain)


# --------------------------------------------------------------------------- the command


def test_command_on_a_shop_clickstream(tmp_path, monkeypatch):
    monkeypatch.delenv("INTENTSTREAM_REPORT__DOMAIN", raising=False)
    click = tmp_path / "shop.jsonl"
    click.write_bytes(b"\n".join(_shop_trace()) + b"\n")
    out = tmp_path / "shop.md"
    assert main(["report", "--input", str(click), "--lang", "en", "--out", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    assert "Domain: e-commerce (detected from the data:" in md
    assert not FINANCE_WORDS.search(md.split("## Clusters at a glance", 1)[1])
