"""``intentstream backtest``: two policies on one generated history, compared."""

from __future__ import annotations

from collections import Counter

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.cli.backtest import with_policy
from intentstream.stream.outcomes.backtest import (
    CAVEATS,
    ESTIMATE_LABEL,
    FinalDecision,
    PolicySummary,
    estimate_difference,
    expected_conversions,
    final_decisions,
    user_differences,
)
from intentstream.stream.outcomes.uplift import UpliftTable
from intentstream.stream.settings import load_settings
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("backtest")
    (d / "history.jsonl").write_bytes(b"".join(generate_lines(GeneratorConfig(users=100, days=5, seed=7))))
    (d / "cap1.toml").write_text("[fatigue]\nchannel_cap = 1\n")
    (d / "quiet.toml").write_text('[fatigue]\nquiet_start = "18:00"\n')
    (d / "empty.toml").write_text("# no change\n")
    return d


def run(tmp_path, history, *opts: str, config: str | None = None, fmt: str = "json"):
    out = tmp_path / f"report.{fmt}"
    argv = (["--config", config] if config else []) + ["backtest", str(history), *opts, "--format", fmt, "--out", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    return codec.loads(text) if fmt == "json" else text


def replay_tallies(tmp_path, history, config: str | None = None) -> Counter:
    """(trigger, channel, final status) of ``replay --offline``'s decision file, counted
    here from the raw audit lines: the last record of an action is its final state."""
    dec = tmp_path / "decisions.jsonl"
    assert main((["--config", config] if config else []) + ["replay", str(history), "--offline", "--out", str(dec)]) == 0
    final: dict[str, dict] = {}
    for line in dec.read_bytes().splitlines():
        r = codec.loads(line)
        if "correction" not in r:
            final[r["action_id"]] = r
    return Counter((r["trigger"], r["channel"] or "none", r["status"]) for r in final.values())


def rows_of(report: dict, policy: str) -> Counter:
    return Counter({(r["trigger"], r["channel"], r["status"]): r["count"] for r in report["policies"][policy]["rows"]})


def test_a_lower_channel_cap_sends_less_and_hits_the_cap(files, tmp_path):
    r = run(tmp_path, files / "history.jsonl", "--candidate", str(files / "cap1.toml"))
    base, cand, diff = r["policies"]["baseline"]["counts"], r["policies"]["candidate"]["counts"], r["difference"]["counts"]
    assert cand["sent"] < base["sent"]
    assert cand["fatigue_cap"] > base["fatigue_cap"]
    assert diff == {k: cand[k] - base[k] for k in base}
    assert r["users_differ"] > 0 and 0 < len(r["examples"]) <= 5
    assert [e["user_id"] for e in r["examples"]] == sorted(e["user_id"] for e in r["examples"])
    for e in r["examples"]:
        assert e["baseline"] != e["candidate"]
    # each policy's rows are what `replay --offline` decides under the same settings
    assert rows_of(r, "baseline") == replay_tallies(tmp_path, files / "history.jsonl")
    assert rows_of(r, "candidate") == replay_tallies(tmp_path, files / "history.jsonl", str(files / "cap1.toml"))
    for row in r["difference"]["rows"]:
        assert row["difference"] == row["candidate"] - row["baseline"]
    assert sum(row["candidate"] for row in r["difference"]["rows"]) == cand["decisions"]
    assert r["uplift"] is None and r["caveats"] == list(CAVEATS)


def test_identical_policies_show_no_difference(files, tmp_path):
    """``--config`` is the baseline and lies under the candidate too: an empty candidate is the same policy."""
    r = run(tmp_path, files / "history.jsonl", "--candidate", str(files / "empty.toml"), config=str(files / "cap1.toml"))
    assert r["policies"]["baseline"]["counts"]["fatigue_cap"] > 0  # --config applies
    assert r["policies"]["baseline"]["rows"] == r["policies"]["candidate"]["rows"]
    assert set(r["difference"]["counts"].values()) == {0}
    assert all(row["difference"] == 0 for row in r["difference"]["rows"])
    assert r["users_differ"] == 0 and r["examples"] == []
    r2 = run(tmp_path, files / "history.jsonl", "--baseline", str(files / "cap1.toml"), "--candidate", str(files / "cap1.toml"))
    assert r2["users_differ"] == 0 and r2["policies"]["candidate"]["counts"] == r["policies"]["candidate"]["counts"]


def test_longer_quiet_hours_show_in_quiet_hours_hits(files, tmp_path):
    r = run(tmp_path, files / "history.jsonl", "--candidate", str(files / "quiet.toml"), "--examples", "0")
    base, cand = r["policies"]["baseline"]["counts"], r["policies"]["candidate"]["counts"]
    assert cand["quiet_hours"] > base["quiet_hours"] > 0
    assert cand["fatigue_cap"] == base["fatigue_cap"]
    assert r["users_differ"] > 0 and r["examples"] == []


def _row(trigger: str, per_send: tuple[float, float, float] | None, strategy="*", channel="*", enough=True) -> dict:
    est = None if per_send is None else dict(zip(("estimate", "low", "high"), per_send))
    return {"key": {"trigger": trigger, "strategy": strategy, "channel": channel, "persona": "*"},
            "treatment": 100, "holdout": 100 if enough else 3, "sent": 90, "opened": 10, "clicked": 5,
            "converted_treatment": 20, "converted_holdout": 10, "ctr": 0.05, "cvr": 0.2, "holdout_cvr": 0.1,
            "uplift_abs": est, "uplift_rel": None, "uplift_per_send": est, "incremental": None, "enough": enough}  # fmt: skip


def test_uplift_estimate_sums_the_matching_rows(files, tmp_path):
    table = {"confidence": 0.95, "min_per_arm": 30, "records": 1000, "measured": 900, "rows": [
        _row("first_transaction_nudge", (0.1, 0.02, 0.2)),
        _row("first_transaction_nudge", (0.3, 0.1, 0.5), strategy="first_transaction_fee_waiver", channel="push"),
        _row("cart_abandoned", None, enough=False),
    ]}  # fmt: skip
    path = tmp_path / "uplift.json"
    path.write_bytes(codec.dumps(table))
    r = run(tmp_path, files / "history.jsonl", "--candidate", str(files / "cap1.toml"), "--uplift", str(path))
    for policy, config in (("baseline", None), ("candidate", str(files / "cap1.toml"))):
        dec = tmp_path / f"{policy}.jsonl"
        main((["--config", config] if config else []) + ["replay", str(files / "history.jsonl"), "--offline", "--out", str(dec)])
        final = {}
        for line in dec.read_bytes().splitlines():
            rec = codec.loads(line)
            final[rec["action_id"]] = rec
        sent = [d for d in final.values() if d["status"] == "sent"]
        fine = [d for d in sent if d["trigger"] == "first_transaction_nudge"
                and d["strategy"]["key"] == "first_transaction_fee_waiver" and d["channel"] == "push"]  # fmt: skip
        coarse = [d for d in sent if d["trigger"] == "first_transaction_nudge" and d not in fine]
        assert fine and coarse
        got = r["uplift"][policy]
        assert got["label"] == ESTIMATE_LABEL
        assert got["estimate"] == pytest.approx(0.3 * len(fine) + 0.1 * len(coarse))
        assert got["low"] == pytest.approx(0.1 * len(fine) + 0.02 * len(coarse))
        assert got["high"] == pytest.approx(0.5 * len(fine) + 0.2 * len(coarse))
        assert got["sends_estimated"] == len(fine) + len(coarse)
        assert got["sends_not_estimated"] == len(sent) - len(fine) - len(coarse)
    d = r["uplift"]["difference"]
    assert d["estimate"] == pytest.approx(r["uplift"]["candidate"]["estimate"] - r["uplift"]["baseline"]["estimate"])
    assert d["low"] <= d["estimate"] <= d["high"]


def fd(user: str, trigger: str, status: str, at: str = "2026-01-05T10:00:00.000Z", channel: str = "push") -> FinalDecision:
    reason = None if status == "sent" else "fatigue_cap" if status == "suppressed" else status
    return FinalDecision(f"{user}-{trigger}-{at}", user, trigger, channel, status, reason, at, "s", "unknown")


def test_estimate_difference_bound_by_hand():
    table = UpliftTable.from_dict({"confidence": 0.95, "min_per_arm": 30, "records": 0, "measured": 0, "rows": [
        _row("t1", (0.1, -0.05, 0.2)), _row("t2", (0.2, 0.1, 0.4)), _row("t3", None, enough=False)]})  # fmt: skip
    base = [fd("u1", "t1", "sent"), fd("u2", "t1", "sent"), fd("u3", "t2", "sent"), fd("u4", "t2", "sent"),
            fd("u5", "t3", "sent"), fd("u6", "t1", "suppressed", channel="none")]  # fmt: skip
    cand = [fd("u1", "t1", "sent"), fd("u2", "t1", "sent"), fd("u7", "t1", "sent"), fd("u3", "t2", "sent")]
    eb, ec = expected_conversions(base, table), expected_conversions(cand, table)
    assert (eb.estimate, eb.low, eb.high, eb.not_estimated) == pytest.approx((0.6, 0.1, 1.2, 1))
    assert (ec.estimate, ec.low, ec.high, ec.not_estimated) == pytest.approx((0.5, -0.05, 1.0, 0))
    d = estimate_difference(eb, ec, table)
    # t1: one more send, at its low end for the low bound; t2: one fewer, at its high end
    assert (d["estimate"], d["low"], d["high"], d["sends_not_estimated"]) == pytest.approx((-0.1, -0.45, 0.1, -1))


def test_final_status_comes_from_the_follow_ups():
    def rec(aid, status, reason=None, **extra):
        return {"action_id": aid, "user_id": "u1", "trigger": "cart_abandoned", "channel": "push", "status": status,
                "reason": reason, "decided_at": f"2026-01-05T2{aid}:00:00.000Z", "fallback_from": None,
                "strategy": {"key": "k"}, "persona": {"cluster_id": "p", "label": "p"}, **extra}  # fmt: skip

    audit = [rec("1", "deferred", "quiet_hours"), rec("2", "deferred", "quiet_hours"), rec("3", "sent"),
             rec("1", "sent"), rec("2", "cancelled", "goal_reached"), {"action_id": "3", "correction": {}},
             rec("4", "deferred", "quiet_hours")]  # fmt: skip
    ds = final_decisions(audit)
    assert [(d.action_id, d.status, d.held, d.corrected) for d in ds] == [
        ("1", "sent", True, False), ("2", "cancelled", True, False), ("3", "sent", False, True), ("4", "deferred", True, False)]
    s = PolicySummary.of(ds)
    assert (s.sent, s.quiet_hours, s.corrected, s.users, s.users_sent) == (2, 3, 1, 1, 1)
    assert s.rows == {("cart_abandoned", "push", "cancelled"): 1, ("cart_abandoned", "push", "deferred"): 1,
                      ("cart_abandoned", "push", "sent"): 2}  # fmt: skip
    assert ds[0].persona == "p" and ds[0].strategy == "k"
    n, shown = user_differences(ds, ds[:3], examples=1)
    assert n == 1 and shown[0]["user_id"] == "u1" and len(shown[0]["baseline"]) == 4 and len(shown[0]["candidate"]) == 3


def test_text_and_markdown_reports_are_deterministic(files, tmp_path):
    table = {"confidence": 0.95, "min_per_arm": 30, "records": 1, "measured": 1, "rows": [_row("first_transaction_nudge", (0.1, 0.02, 0.2))]}
    (tmp_path / "u.json").write_bytes(codec.dumps(table))
    args = ("--candidate", str(files / "cap1.toml"), "--uplift", str(tmp_path / "u.json"), "--examples", "2")
    text = run(tmp_path, files / "history.jsonl", *args, fmt="text")
    assert text == run(tmp_path, files / "history.jsonl", *args, fmt="text")
    for label in ("fatigue-cap hits", "quiet-hours hits", "holdout decisions", "users whose decisions differ",
                  "decisions by trigger x channel x final status", ESTIMATE_LABEL, "not estimated", "cannot tell"):  # fmt: skip
        assert label in text
    md = run(tmp_path, files / "history.jsonl", *args, fmt="md")
    assert md.startswith("# Backtest of") and "| trigger | channel | status | baseline | candidate | difference |" in md
    assert ESTIMATE_LABEL in md and md.count("**u") == 2


def test_a_policy_file_wins_over_the_environment(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text("[fatigue]\nchannel_cap = 5\n[outcomes.windows_s]\nkyc_stalled = 60\n")
    current = load_settings(env={"INTENTSTREAM_FATIGUE__CHANNEL_CAP": "1", "INTENTSTREAM_FATIGUE__COUPON_CAP": "4"})
    s = with_policy(current, policy)
    assert (s.fatigue.channel_cap, s.fatigue.coupon_cap) == (5, 4)
    assert s.outcomes.windows_s == {**current.outcomes.windows_s, "kyc_stalled": 60}  # tables merge key by key


def test_missing_or_bad_inputs_exit_2(files, tmp_path, capsys):
    h, cap1 = str(files / "history.jsonl"), str(files / "cap1.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[fatigue]\nno_such_knob = 1\n")
    (tmp_path / "not_a_table.json").write_text('{"rows": [{"key": {}}]}')
    cases = [
        ["backtest", str(tmp_path / "missing.jsonl"), "--candidate", cap1],
        ["backtest", h, "--candidate", str(tmp_path / "missing.toml")],
        ["backtest", h, "--candidate", cap1, "--baseline", str(tmp_path / "missing.toml")],
        ["backtest", h, "--candidate", cap1, "--uplift", str(tmp_path / "missing.json")],
        ["backtest", h, "--candidate", str(bad)],
        ["backtest", h, "--candidate", cap1, "--uplift", str(tmp_path / "not_a_table.json")],
        ["backtest", "-", "--candidate", cap1],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("intentstream backtest:") and "\n" not in err, err
    assert not (tmp_path / "report.json").exists()
