"""Uplift tables: the statistics against published and independently computed values,
the measured population and the arms, the min-sample rule, zero counts, the renderers
and the ``uplift`` command."""

from __future__ import annotations

import html
import math
import re
from statistics import NormalDist

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.outcomes.record import ActionOutcome
from intentstream.stream.outcomes.render import render_html, render_json, render_markdown, render_text
from intentstream.stream.outcomes.uplift import (
    DIMENSIONS,
    UpliftTable,
    lookup,
    newcombe_difference,
    relative_uplift,
    summarize,
)
from intentstream.stream.settings import default_settings

T0 = 1767607200000  # 2026-01-05T10:00:00Z
HOUR = 3_600_000


def outcome(
    i: int,
    arm: str,
    converted: bool,
    *,
    trigger: str = "cart_abandoned",
    status: str | None = None,
    reason: str | None = None,
    strategy: str = "cart_reminder_coupon",
    channel: str | None = "push",
    persona: str | None = "considering/coupon_oriented",
    clicked: bool = False,
    corrected: bool = False,
    user: str | None = None,
) -> dict:
    """One outcome record in its JSON form, built through the contract class."""
    status = status or ("holdout" if arm == "holdout" else "sent")
    rec = ActionOutcome(
        action_id=f"a{trigger}{i}{arm}",
        user_id=user or f"u{i:05d}",
        trigger=trigger,
        strategy={"key": strategy, "group": "primary"},
        channel=channel,
        status=status,
        reason=reason if reason is not None else ("holdout" if status == "holdout" else None),
        experiment={"id": f"holdout-v2/{trigger}", "arm": arm},
        persona=None if persona is None else {"cluster_id": persona, "label": persona.replace("/", " · ")},
        decided_at=T0 + i * 1000,
        sent_at=T0 + i * 1000 if status == "sent" else None,
        window_end=T0 + i * 1000 + 72 * HOUR,
        goals=("payment_success",),
        opened=clicked,
        clicked=clicked,
        dismissed=False,
        converted_at=T0 + i * 1000 + HOUR if converted else None,
        corrected=corrected,
    )
    return rec.to_dict()


def arms(k1: int, n1: int, k2: int, n2: int, **kw) -> list[dict]:
    """n1 treatment records (k1 converted) and n2 holdout records (k2 converted)."""
    return [outcome(i, "treatment", i < k1, **kw) for i in range(n1)] + [
        outcome(10_000 + i, "holdout", i < k2, **kw) for i in range(n2)
    ]


def one_row(records, **kw):
    table = summarize(records, levels=(("trigger",),), **kw)
    assert len(table.rows) == 1
    return table.rows[0]


# --------------------------------------------------------------------------- statistics

# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (the six
# published examples): (k1, n1, k2, n2) -> (low, high).
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_difference_interval_matches_newcombes_published_values(counts, published):
    k1, n1, k2, n2 = counts
    i = newcombe_difference(k1, n1, k2, n2, 0.95)
    assert i.estimate == pytest.approx(k1 / n1 - k2 / n2)
    assert (round(i.low, 4), round(i.high, 4)) == published


def _wilson_closed_form(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return mid - half, mid + half


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("counts", [(120, 400, 30, 200), (3, 50, 9, 60), (0, 31, 2, 40)])
def test_table_interval_is_the_hybrid_score_interval_at_any_confidence(counts, confidence):
    k1, n1, k2, n2 = counts
    row = one_row(arms(*counts), min_per_arm=30, confidence=confidence)
    l1, u1 = _wilson_closed_form(k1, n1, confidence)
    l2, u2 = _wilson_closed_form(k2, n2, confidence)
    p1, p2 = k1 / n1, k2 / n2
    assert row.uplift_abs.estimate == pytest.approx(p1 - p2)
    assert row.uplift_abs.low == pytest.approx(p1 - p2 - math.hypot(p1 - l1, u2 - p2))
    assert row.uplift_abs.high == pytest.approx(p1 - p2 + math.hypot(u1 - p1, p2 - l2))


def test_wider_confidence_gives_a_wider_interval():
    recs = arms(120, 400, 30, 200)
    widths = [(lambda i: i.high - i.low)(one_row(recs, min_per_arm=30, confidence=c).uplift_abs) for c in (0.8, 0.95, 0.99)]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_relative_uplift_is_the_log_relative_risk_interval():
    k1, n1, k2, n2 = 40, 200, 20, 180
    row = one_row(arms(k1, n1, k2, n2), min_per_arm=30, confidence=0.95)
    rr = (k1 / n1) / (k2 / n2)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    z = NormalDist().inv_cdf(0.975)
    assert row.uplift_rel.estimate == pytest.approx(rr - 1)
    assert row.uplift_rel.low == pytest.approx(rr * math.exp(-z * se) - 1)
    assert row.uplift_rel.high == pytest.approx(rr * math.exp(z * se) - 1)


def test_zero_conversions():
    no_holdout_conv = one_row(arms(5, 60, 0, 40), min_per_arm=30)
    assert no_holdout_conv.uplift_rel is None and no_holdout_conv.holdout_cvr == 0.0
    assert no_holdout_conv.uplift_abs.low < no_holdout_conv.uplift_abs.estimate == pytest.approx(5 / 60)
    assert relative_uplift(0, 60, 4, 40, 0.95) is None
    nothing = one_row(arms(0, 60, 0, 40), min_per_arm=30)
    assert nothing.uplift_abs.estimate == 0.0 and nothing.uplift_abs.low < 0 < nothing.uplift_abs.high
    assert nothing.uplift_rel is None and nothing.cvr == 0.0
    everything = one_row(arms(60, 60, 40, 40), min_per_arm=30)
    assert everything.uplift_abs.estimate == 0.0 and everything.uplift_rel.estimate == pytest.approx(0.0)


def test_min_per_arm_rule():
    assert not one_row(arms(10, 100, 3, 29), min_per_arm=30).enough
    assert not one_row(arms(10, 29, 3, 100), min_per_arm=30).enough
    ok = one_row(arms(10, 30, 3, 30), min_per_arm=30)
    assert ok.enough and ok.uplift_abs is not None
    short = one_row(arms(10, 100, 3, 29), min_per_arm=30)
    assert (short.treatment, short.holdout, short.converted_treatment, short.converted_holdout) == (100, 29, 10, 3)
    assert short.uplift_abs is short.uplift_rel is short.uplift_per_send is short.incremental is None
    assert short.cvr == pytest.approx(0.1)  # plain rates stay; only the uplift is withheld
    # default: [outcomes] min_per_arm
    k = default_settings().outcomes.min_per_arm
    assert one_row(arms(1, k, 1, k)).enough and not one_row(arms(1, k, 1, k - 1)).enough
    # an empty arm is never enough, even with min_per_arm 0
    assert not one_row(arms(3, 10, 0, 0), min_per_arm=0).enough


# --------------------------------------------------------------------------- population, arms, per send


def test_intention_to_treat_and_per_send():
    # treatment arm: 60 sent (18 converted), 20 suppressed by caps (2 converted),
    # 20 cancelled (0 converted); holdout 100 (10 converted)
    recs = [outcome(i, "treatment", i < 18, clicked=i < 6) for i in range(60)]
    recs += [outcome(100 + i, "treatment", i < 2, status="suppressed", reason="channel_cap") for i in range(20)]
    recs += [outcome(200 + i, "treatment", False, status="cancelled", reason="goal_reached") for i in range(20)]
    recs += [outcome(1000 + i, "holdout", i < 10) for i in range(100)]
    # outside the population: cooldown / stale suppressions and corrected decisions, in either arm
    recs += [outcome(300 + i, "treatment", True, status="suppressed", reason="cooldown") for i in range(7)]
    recs += [outcome(400 + i, "holdout", True, status="suppressed", reason="stale") for i in range(5)]
    recs += [outcome(500 + i, "holdout", False, corrected=True) for i in range(4)]
    table = summarize(recs, levels=(("trigger",),), min_per_arm=30)
    assert (table.records, table.measured) == (len(recs), 200)
    row = table.rows[0]
    assert (row.treatment, row.holdout, row.sent, row.clicked, row.opened) == (100, 100, 60, 6, 6)
    assert (row.converted_treatment, row.converted_holdout) == (20, 10)
    assert row.ctr == pytest.approx(6 / 60) and row.cvr == pytest.approx(0.2) and row.holdout_cvr == pytest.approx(0.1)
    itt = row.uplift_abs
    assert itt.estimate == pytest.approx(0.1)
    s = 60 / 100
    for got, want in zip(
        (row.uplift_per_send.estimate, row.uplift_per_send.low, row.uplift_per_send.high),
        (itt.estimate / s, itt.low / s, itt.high / s),
    ):
        assert got == pytest.approx(want)
    assert row.incremental.estimate == pytest.approx(itt.estimate / s * 60)  # 10 conversions caused
    assert row.incremental.estimate == pytest.approx(10.0)
    assert row.incremental.low == pytest.approx(itt.low * 100) and row.incremental.high == pytest.approx(itt.high * 100)


def test_no_sends_gives_no_per_send_figures():
    recs = [outcome(i, "treatment", i < 3, status="suppressed", reason="opt_out") for i in range(40)]
    recs += [outcome(100 + i, "holdout", i < 3) for i in range(40)]
    row = one_row(recs, min_per_arm=30)
    assert row.enough and row.uplift_abs is not None and row.sent == 0
    assert row.uplift_per_send is None and row.incremental is None and row.ctr is None


# --------------------------------------------------------------------------- grouping, order, lookup, JSON


def _mixed() -> list[dict]:
    recs = []
    for trigger, n, personas in (("payment_stalled", 80, ("b", "a")), ("cart_abandoned", 140, ("a", "b", None))):
        for i in range(n):
            for arm in ("treatment", "holdout"):
                persona = personas[i % len(personas)]
                channel = None if (i % 7 == 0 and arm == "treatment") else ("push" if i % 2 else "sms")
                recs.append(outcome(i, arm, i % 4 == 0, trigger=trigger, persona=persona, channel=channel))
    return recs


def test_rows_are_grouped_by_level_then_key_in_a_fixed_order():
    recs = _mixed()
    table = summarize(recs, min_per_arm=10)
    levels = [tuple(d for d in DIMENSIONS if r.key[d] != "*") for r in table.rows]
    assert levels == sorted(levels, key=lambda lv: len(lv))  # default levels: coarse to fine
    for lv in set(levels):
        keys = [tuple(r.key[d] for d in DIMENSIONS) for r, rl in zip(table.rows, levels) if rl == lv]
        assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert [r.key["trigger"] for r in table.rows if levels[table.rows.index(r)] == ("trigger",)] == ["cart_abandoned", "payment_stalled"]
    assert {r.key["channel"] for r in table.rows} >= {"none", "push", "sms"}
    assert "unknown" in {r.key["persona"] for r in table.rows}
    # every level partitions the measured population
    for lv in set(levels):
        assert sum(r.treatment + r.holdout for r, rl in zip(table.rows, levels) if rl == lv) == table.measured
    # order of the input does not matter
    assert summarize(list(reversed(recs)), min_per_arm=10) == table


def test_persona_of_replaces_the_behaviour_persona():
    recs = _mixed()
    table = summarize(recs, levels=(("trigger", "persona"),), persona_of=lambda r: "even" if int(r["user_id"][1:]) % 2 == 0 else "odd")
    assert {r.key["persona"] for r in table.rows} == {"even", "odd"}
    assert all(r.key["strategy"] == r.key["channel"] == "*" for r in table.rows)


def test_lookup_takes_the_finest_row_with_enough_data():
    recs = arms(10, 100, 5, 100, persona="a") + arms(2, 20, 1, 20, persona="b")
    table = summarize(recs, min_per_arm=30)
    fine = lookup(table, "cart_abandoned", "cart_reminder_coupon", "push", "a")
    assert fine.key["persona"] == "a" and fine.treatment == 100
    coarse = lookup(table, "cart_abandoned", "cart_reminder_coupon", "push", "b")  # b is too small: falls back
    assert coarse.key == {"trigger": "cart_abandoned", "strategy": "cart_reminder_coupon", "channel": "push", "persona": "*", "mode": "*"}
    assert coarse.treatment == 120
    assert lookup(table, "cart_abandoned", "other_strategy", "push", "a").key["strategy"] == "*"
    assert lookup(table, "kyc_stalled", "x", "push", "a") is None


def test_json_form_round_trips():
    table = summarize(_mixed(), min_per_arm=10)
    back = UpliftTable.from_dict(codec.loads(render_json(table)))
    assert back == table
    assert any(r.uplift_abs is not None for r in back.rows) and any(r.uplift_rel is None for r in back.rows)


def test_bad_levels_are_refused():
    for levels in ((("trigger", "colour"),), ((),)):
        with pytest.raises(ValueError):
            summarize([], levels=levels)


# --------------------------------------------------------------------------- rendering


def _table() -> UpliftTable:
    recs = arms(30, 200, 10, 150) + arms(1, 12, 0, 3, trigger="kyc_stalled", strategy="kyc_progress_reward")
    return summarize(recs, levels=(("trigger",),), min_per_arm=30, confidence=0.95)


def test_text_is_an_aligned_table_with_header_and_legend():
    table = _table()
    text = render_text(table)
    lines = text.splitlines()
    assert lines[0] == "outcomes: 365 records, 365 measured; 95% intervals; at least 30 decisions per arm"
    head, good, short = lines[1], lines[2], lines[3]
    assert head.split()[0] == "TRIGGER" and "STRATEGY" not in head  # only the dimensions cut by
    for col, value in (("DECISIONS", "200+150"), ("SENDS", "200"), ("CVR", "15.0%"), ("HOLDOUT CVR", "6.7%")):
        assert good.index(f"  {value} ") + 2 == head.index(f"  {col}") + 2, col  # the cell starts under its title
    row = table.rows[0]
    pp = f"{row.uplift_abs.estimate * 100:+.1f} [{row.uplift_abs.low * 100:+.1f}, {row.uplift_abs.high * 100:+.1f}]"
    assert good.index(pp) == head.index("UPLIFT")
    assert short.startswith("kyc_stalled") and short.endswith("not enough data (n=12 / 3, need 30 per arm)")
    assert short.index("not enough") == head.index("CTR") and "%" not in short
    assert any("intention to treat" in line for line in lines) and any(line.startswith("per send:") for line in lines)


def test_markdown_and_html():
    table = _table()
    md = render_markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(table.rows) and all(r.count(" | ") == rows[0].count(" | ") for r in rows)
    assert "not enough data (n=12 / 3, need 30 per arm)" in md
    page = render_html(table)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?:|<script|<link|src=|url\(", page)
    assert page.count("<tr") == 1 + len(table.rows)


def test_everything_is_escaped():
    evil = "<b onclick='x'>&cart|pipe"
    table = summarize(arms(3, 40, 1, 40, trigger=evil), levels=(("trigger",),), min_per_arm=30)
    page = render_html(table)
    assert evil not in page and html.escape(evil, quote=True) in page
    assert "cart\\|pipe" in render_markdown(table)


def test_an_empty_table_renders():
    table = summarize([])
    assert (table.records, table.measured, table.rows) == (0, 0, [])
    for render in (render_text, render_markdown, render_html):
        assert "no measured outcome records" in render(table)


# --------------------------------------------------------------------------- the command


@pytest.fixture
def outcomes_file(tmp_path):
    recs = arms(40, 300, 10, 200) + arms(3, 20, 1, 10, trigger="kyc_stalled", persona=None)
    lines = [codec.dumps(r) for r in recs]
    lines[5:5] = [b"{not json", b'{"action_id": "x"}', b"[1, 2]"]
    path = tmp_path / "o.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    return path, recs


def test_command_reads_a_file_and_counts_bad_lines(outcomes_file, tmp_path, capsys):
    path, recs = outcomes_file
    out = tmp_path / "u.json"
    assert main(["uplift", str(path), "--format", "json", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 line(s): not JSON" in err and "skipped 2 line(s): not an outcome record" in err
    got = UpliftTable.from_dict(codec.loads(out.read_bytes()))
    s = default_settings().outcomes
    assert got == summarize(recs, min_per_arm=s.min_per_arm, confidence=s.confidence)
    assert got.records == len(recs)


def test_command_formats_and_by(outcomes_file, tmp_path, capsys):
    path, recs = outcomes_file
    assert main(["uplift", str(path), "--by", "trigger,persona"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].split()[:2] == ["TRIGGER", "PERSONA"]
    assert "considering/coupon_oriented" in text and "unknown" in text and "not enough data (n=20 / 10" in text
    for fmt, marker in (("md", "| trigger |"), ("html", "<!DOCTYPE html>")):
        assert main(["uplift", str(path), "--format", fmt]) == 0
        assert marker in capsys.readouterr().out
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert main(["uplift", str(path), "--out", str(a)]) == 0 and main(["uplift", str(path), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_command_errors(tmp_path, capsys):
    assert main(["uplift", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl" in err[0]
    assert main(["uplift"]) == 2
    assert "OUTCOMES.jsonl or --from-topic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["uplift", "x.jsonl", "--by", "trigger,colour"])


@pytest.mark.integration
def test_command_reads_the_whole_outcomes_topic(stack, make_topics, monkeypatch, tmp_path, capsys):
    from kafka import KafkaProducer

    (topic,) = make_topics({"outcomes": 3})
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", stack.kafka_bootstrap)
    monkeypatch.setenv("INTENTSTREAM_TOPICS__OUTCOMES", topic)
    recs = arms(40, 300, 10, 200) + arms(3, 20, 1, 10, trigger="kyc_stalled")
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    for i, rec in enumerate(recs):
        producer.send(topic, key=rec["user_id"].encode(), value=codec.dumps(rec), partition=i % 3)
    producer.send(topic, value=b"{oops", partition=1)
    producer.flush()
    producer.close()
    out = tmp_path / "u.json"
    assert main(["uplift", "--from-topic", "--format", "json", "--out", str(out)]) == 0
    assert "skipped 1 line(s): not JSON" in capsys.readouterr().err
    s = default_settings().outcomes
    assert UpliftTable.from_dict(codec.loads(out.read_bytes())) == summarize(recs, min_per_arm=s.min_per_arm, confidence=s.confidence)
    monkeypatch.setenv("INTENTSTREAM_TOPICS__OUTCOMES", topic + ".missing")
    assert main(["uplift", "--from-topic"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_explored_and_exploited_traffic_get_their_own_uplift():
    """Both arms of the holdout carry the strategy policy's mode: ``--by trigger,mode``."""
    recs = []
    for mode, conv in (("explore", 5), ("exploit", 20)):
        for r in arms(conv, 100, 5, 100):
            r["strategy"] = {**r["strategy"], "policy": {"arm": r["strategy"]["key"], "mode": mode, "estimate": None, "sends": 0}}
            recs.append(r)
    table = summarize(recs, levels=(("trigger", "mode"),), min_per_arm=30)
    by_mode = {r.key["mode"]: r for r in table.rows}
    assert set(by_mode) == {"explore", "exploit"} and by_mode["exploit"].uplift_abs.estimate > by_mode["explore"].uplift_abs.estimate
