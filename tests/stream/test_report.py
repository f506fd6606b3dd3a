"""Persona report: content, folding of small clusters, zh/en, md/html, the command."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import uuid
from functools import lru_cache
from pathlib import Path

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.personas.labels import cluster_label
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.playbook import SECTIONS, PlaybookError, load_playbook, parse_playbook
from intentstream.stream.personas.service import PersonaService
from intentstream.stream.report.html import render_html
from intentstream.stream.report.markdown import render_markdown
from intentstream.stream.report.model import build_report
from intentstream.stream.report.text import TEXT
from intentstream.stream.synth.segments import synthetic_segments
from intentstream.stream.settings import PersonaSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=None)
def _clickstream(users: int = 150, days: int = 3, seed: int = 9) -> bytes:
    from intentstream.stream.synth.clickstream import generate_lines
    from intentstream.stream.synth.config import GeneratorConfig

    return b"".join(line if line.endswith(b"\n") else line + b"\n" for line in generate_lines(GeneratorConfig(users=users, days=days, seed=seed)))


@lru_cache(maxsize=None)
def _model(n_clusters: int = 12) -> PersonaModel:
    from intentstream.stream.report.sources import segments_from_clickstream

    model = PersonaModel(PersonaSettings.defaults(n_clusters=n_clusters))
    for seg in segments_from_clickstream(enumerate(_clickstream().splitlines(), 1), Settings.defaults()):
        model.learn_one(seg)
    return model


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_cluster_has_every_section_filled(lang):
    rep = build_report(_model(), lang=lang, min_users=0)
    assert rep.clusters and not rep.small
    for c in rep.clusters:
        assert [s.key for s in c.strategies] == list(SECTIONS)
        for s in c.strategies:
            assert s.lines and all(line.strip() for line in s.lines), (c.cluster_id, s.key)
    md = render_markdown(rep)
    for c in rep.clusters:
        body = md.split(f"## {c.title}\n", 1)[1].split("\n---\n", 1)[0]
        for key in SECTIONS:
            section = body.split(f"### {TEXT[lang][key]}\n", 1)[1]
            assert section.lstrip("\n").startswith("- "), (c.cluster_id, key)  # never an empty section


def test_sections_fall_back_when_no_entry_applies():
    class Nothing:
        def dominant(self, name):
            return ("unheard_of", 1.0)

        def share(self, name, value):
            return 0.0

    pb = load_playbook()
    for lang in ("zh", "en"):
        for key in SECTIONS:
            entries = pb.select(key, Nothing())
            assert entries and all(e.fallback for e in entries)
            assert pb.lines(key, Nothing(), lang)


def test_titles_and_labels_match_the_clusters_statuses():
    model = _model()
    vocab = load_playbook().vocab
    rep = build_report(model, lang="zh", min_users=0)
    for c in rep.clusters:
        st = model.stats[c.cluster_id]
        label = cluster_label(st)
        assert c.title == f"聚类 {c.cluster_id}: {vocab.term('behaviour_stage', label.stage, 'zh')}·{vocab.term('urgency', label.urgency, 'zh')}"
        assert c.label.startswith(label.text("zh", vocab))
        tx = st.dominant("transaction_status")[0]
        if label.stage == "transacted":
            assert tx == "completed"
    assert len({c.label for c in rep.clusters}) >= len(rep.clusters) - 2  # shared labels get a trait


def test_small_clusters_are_folded():
    model = _model()
    sizes = sorted(st.assigned for st in model.clusters())
    k = sizes[len(sizes) // 2]
    rep = build_report(model, lang="en", min_users=k)
    assert rep.small and rep.clusters
    assert all(c.users >= k for c in rep.clusters) and all(c.users < k for c in rep.small)
    md = render_markdown(rep)
    assert "## Other / small clusters" in md
    for c in rep.small:
        assert f"## {c.title}\n" not in md  # no strategy section of its own
        assert c.title in md.split("## Other / small clusters", 1)[1]
    # default threshold: max(report_min_users, 1% of users)
    assert build_report(model).min_users == max(5, -(-sum(sizes) // 100))
    everything_small = build_report(model, min_users=10**6)
    assert not everything_small.clusters and len(everything_small.small) == len(model.clusters())
    assert "## 其他/小聚类" in render_markdown(everything_small)


def test_single_user_clusters_never_get_their_own_section_by_default():
    model = PersonaModel(PersonaSettings.defaults(n_clusters=4))
    for seg in synthetic_segments(users=200, seed=4, days=2):
        model.learn_one(seg)
    model.learn_one({"user_id": "odd", "duration_min": 500.0, "interactions": 3000, "intent_strength": 1.0})
    rep = build_report(model)
    assert all(c.users >= 5 for c in rep.clusters)


_URL = re.compile(r"""(?:src|href|xlink:href)\s*=|url\s*\(|@import|<script|<link|<iframe|<img""", re.I)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_is_self_contained(lang):
    page = render_html(build_report(_model(), lang=lang, min_users=5))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http" not in page.lower() and "//" not in re.sub(r"<!--.*?-->", "", page).replace("://", "")
    assert not _URL.search(page)
    assert page.count("<svg") == 1 + len(build_report(_model(), lang=lang, min_users=5).clusters)  # timeline + one profile each
    assert "<polyline" in page and "<rect" in page
    assert ('lang="zh-CN"' if lang == "zh" else 'lang="en"') in page


def test_output_is_deterministic_and_language_specific():
    a = build_report(_model(), lang="zh")
    assert render_markdown(a) == render_markdown(build_report(_model(), lang="zh"))
    assert render_html(a) == render_html(build_report(_model(), lang="zh"))
    zh, en = render_markdown(a), render_markdown(build_report(_model(), lang="en"))
    assert zh.startswith("# 基于业务驱动的用户画像与营销策略报告") and "营销策略" in zh and "价格策略" in zh
    assert en.startswith("# Business-driven user personas") and "Price strategy" in en
    assert not re.search(r"[\u4e00-\u9fff]", en)  # no Chinese left in the English report


def test_empty_model_gives_a_short_valid_report():
    rep = build_report(PersonaModel(), lang="en")
    assert "No clusters yet" in render_markdown(rep) and "No clusters yet" in render_html(rep)


# --------------------------------------------------------------------------- playbook


def _minimal(**entry_overrides):
    entries = [{"section": s, "fallback": True, "zh": ["默认"], "en": ["default"]} for s in SECTIONS]
    if entry_overrides:
        entries.append({"section": "price", "zh": ["价"], "en": ["p"], **entry_overrides})
    return {"vocab": {"kyc_status": {"completed": {"zh": "已完成", "en": "completed"}}}, "entry": entries}


def test_playbook_validation():
    parse_playbook(_minimal())
    parse_playbook(_minimal(when={"kyc_status": "completed"}))
    bad = [
        {"vocab": {}, "entry": _minimal()["entry"][:-1]},  # a section without fallback
        _minimal(when={"shoe_size": "42"}),
        _minimal(when={"kyc_status": "maybe"}),
        _minimal(section="astrology"),
        _minimal(zh=["a", "b"]),
        _minimal(en=[]),
        _minimal(colour="red"),
    ]
    for data in bad:
        with pytest.raises(PlaybookError):
            parse_playbook(data)


def test_default_playbook_covers_every_status_value_in_both_languages():
    pb = load_playbook()
    from intentstream.stream.personas.features import CATEGORIES

    for name, values in {**CATEGORIES, "urgency": ("low", "medium", "high"),
                         "lifecycle_stage": ("introduction", "growth", "maturity", "decline")}.items():  # fmt: skip
        for v in values:
            assert pb.vocab.terms[name][v].keys() == {"zh", "en"}, (name, v)
    assert "http" not in (ROOT / "config" / "playbook.toml").read_text()


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    click = d / "click.jsonl"
    click.write_bytes(_clickstream())
    segs = d / "segments.jsonl"
    assert main(["segments", str(click), "--out", str(segs), "--close-open"]) == 0
    return d, click, segs


def test_command_from_clickstream_and_from_segments_agree(files):
    d, click, segs = files
    assert main(["report", "--input", str(click), "--lang", "en", "--out", str(d / "a.md")]) == 0
    assert main(["report", "--segments", str(segs), "--lang", "en", "--out", str(d / "b.md")]) == 0
    a = (d / "a.md").read_text(encoding="utf-8")
    assert a == (d / "b.md").read_text(encoding="utf-8")
    assert "## Cluster " in a and "Differentiated campaigns" in a
    assert main(["report", "--segments", str(segs), "--format", "html", "--min-users", "1", "--out", str(d / "c.html")]) == 0
    page = (d / "c.html").read_text(encoding="utf-8")
    assert "<svg" in page and "聚类" in page and "http" not in page


def test_command_is_byte_identical_across_processes(files):
    d, click, _ = files
    outs = []
    for i, hash_seed in enumerate(("3", "4")):
        out = d / f"p{i}.html"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-m", "intentstream.stream.cli", "report", "--input", str(click), "--format", "html", "--out", str(out)],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_command_reports_bad_input(files, capsys):
    d, _, _ = files
    bad = d / "bad.jsonl"
    bad.write_text('{"not": "a segment"}\n')
    assert main(["report", "--segments", str(bad)]) == 2
    assert "not an intent segment" in capsys.readouterr().err
    assert main(["report", "--segments", str(d / "missing.jsonl")]) == 2


@pytest.mark.integration
def test_live_report_reads_the_agents_checkpoint_from_redis(redis_url, files, capsys):
    import redis

    from intentstream.stream.state.redis.personas import RedisPersonaStore

    _, _, segs = files
    prefix = f"t.report.{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(redis_url)
    store = RedisPersonaStore(client, prefix)
    try:
        svc = PersonaService.start(Settings.defaults(), store)
        for line in segs.read_bytes().splitlines():
            svc.on_segment(codec.loads(line))
        svc.maybe_checkpoint(now_ms=0, force=True)
        env = {"INTENTSTREAM_REDIS__URL": redis_url, "INTENTSTREAM_REDIS__KEY_PREFIX": prefix}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            assert main(["report", "--lang", "en"]) == 0
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        live = capsys.readouterr().out
        assert main(["report", "--segments", str(segs), "--lang", "en"]) == 0
        assert live == capsys.readouterr().out  # the live model is the offline model
    finally:
        store.delete_all()
        client.close()


# --------------------------------------------------------------------------- triggers & uplift (--outcomes)


def _outcomes(users, per_user=(("cart_abandoned", 4, 2), ("kyc_stalled", 1, 0))):
    """Outcome records (JSON form) for ``users``: per trigger, n treatment and m holdout
    decisions per user; a user converts under treatment when their number is even."""
    from intentstream.stream.outcomes.record import ActionOutcome

    recs = []
    for n, user in enumerate(sorted(users)):
        for trigger, treated, held in per_user:
            for j in range(treated + held):
                arm = "treatment" if j < treated else "holdout"
                converted = (n % 2 == 0) if arm == "treatment" else (n % 5 == 0)
                t = 1767607200000 + n * 60_000 + j * 1000
                recs.append(ActionOutcome(
                    action_id=f"{user}-{trigger}-{j}", user_id=user, trigger=trigger,
                    strategy={"key": f"{trigger}_s", "group": "primary"}, channel="push",
                    status="sent" if arm == "treatment" else "holdout", reason=None if arm == "treatment" else "holdout",
                    experiment={"id": f"holdout-v2/{trigger}", "arm": arm}, persona=None,
                    decided_at=t, sent_at=t if arm == "treatment" else None, window_end=t + 259_200_000,
                    goals=("payment_success",), opened=False, clicked=False, dismissed=False,
                    converted_at=t + 1000 if converted else None, corrected=False,
                ).to_dict())  # fmt: skip
    return recs


def _strip_uplift_md(md: str, lang: str) -> str:
    t = TEXT[lang]
    md = "\n".join(line for line in md.split("\n") if not line.startswith(t["uplift_note"].split("：")[0].split(":")[0]))
    return re.sub(rf"\n\n### {re.escape(t['uplift'])}\n\n(?:.+\n)+?(?=\n---\n)", "\n", md)


def _strip_uplift_html(page: str, lang: str) -> str:
    t = TEXT[lang]
    page = re.sub(r'\n<p class="muted">' + re.escape(html.escape(t["uplift_note"].split("{")[0])) + r"[^<]*</p>", "", page)
    return re.sub(rf"<h3>{re.escape(html.escape(t['uplift']))}</h3>.*?(?:</table>|</p>)(?=</section>)", "", page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_uplift_part_per_cluster(lang):
    from intentstream.stream.report.triggers import cluster_uplift
    from intentstream.stream.settings import OutcomeSettings

    model = _model()
    recs = _outcomes([*model.users, "never-seen"])
    table = cluster_uplift(model, recs, OutcomeSettings.defaults(min_per_arm=20, confidence=0.9))
    rep = build_report(model, lang=lang, min_users=0, uplift=table)
    md, page = render_markdown(rep), render_html(rep)
    t = TEXT[lang]
    assert md.count(f"### {t['uplift']}\n") == len(rep.clusters) == page.count(f"<h3>{html.escape(t['uplift'])}</h3>")
    enough = short = 0
    for c in rep.clusters:
        members = sorted(u for u, cid in model.users.items() if cid == c.cluster_id)
        assert [r.key["trigger"] for r in c.uplift] == (["cart_abandoned", "kyc_stalled"] if members else [])
        cart = c.uplift[0]
        assert (cart.treatment, cart.holdout, cart.sent) == (4 * len(members), 2 * len(members), 4 * len(members))
        body = md.split(f"## {c.title}\n", 1)[1].split("\n---\n", 1)[0]
        part = body.split(f"### {t['uplift']}\n", 1)[1]
        assert f"| cart_abandoned | {4 * len(members)}+{2 * len(members)} | {4 * len(members)} |" in part
        if cart.enough:
            enough += 1
            assert f"{cart.cvr * 100:.1f}%" in part and f"{cart.uplift_abs.estimate * 100:+.1f} [" in part
        else:
            short += 1
            assert t["not_enough"].format(t=cart.treatment, h=cart.holdout, k=20) in part
        assert t["not_enough"].format(t=len(members), h=0, k=20) in part  # kyc_stalled: no holdout at all
    assert enough and short  # the fixture has clusters on both sides of the rule
    assert table.measured == len(recs) and sum(r.treatment + r.holdout for r in table.rows if r.key["persona"] == "unassigned") == 7
    # without outcomes, the same report byte for byte
    plain = build_report(model, lang=lang, min_users=0)
    assert _strip_uplift_md(md, lang) == render_markdown(plain) != md
    assert _strip_uplift_html(page, lang) == render_html(plain) != page
    assert not _URL.search(page)


def test_uplift_part_of_a_cluster_without_outcomes():
    from intentstream.stream.report.triggers import cluster_uplift

    model = _model()
    rep = build_report(model, lang="en", min_users=0, uplift=cluster_uplift(model, []))
    assert all(c.uplift == [] for c in rep.clusters)
    assert render_markdown(rep).count(TEXT["en"]["no_outcomes"]) == len(rep.clusters)


def test_command_with_outcomes(files, capsys):
    d, _, segs = files
    users = {codec.loads(line)["user_id"] for line in segs.read_bytes().splitlines()}
    out = d / "outcomes.jsonl"
    out.write_bytes(b"".join(codec.dumps_line(r) for r in _outcomes(users)) + b"{broken\n")
    assert main(["report", "--segments", str(segs), "--lang", "en", "--min-users", "1", "--outcomes", str(out), "--out", str(d / "u.md")]) == 0
    assert "skipped 1 line(s): not JSON" in capsys.readouterr().err
    with_part = (d / "u.md").read_text(encoding="utf-8")
    assert main(["report", "--segments", str(segs), "--lang", "en", "--min-users", "1", "--out", str(d / "plain.md")]) == 0
    assert with_part.count("### Triggers & uplift\n") == with_part.count("### Differentiated campaigns\n") > 0
    assert "not enough data" in with_part  # the default [outcomes] min_per_arm: 30 per arm
    assert _strip_uplift_md(with_part, "en") == (d / "plain.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["report", "--segments", str(segs), "--outcomes", str(d / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
