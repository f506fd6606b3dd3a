"""``intentstream explain``: one user's decisions with every check that shaped them.

One hand-made user in Asia/Shanghai whose week holds a message capped across channels
(``global_cap``: two already in 24 h), a cart abandoned at 22:30 local (deferred by the
quiet hours to 08:00, then released), and a cart whose push is at its cap (3 in 7 days:
the message falls back to in_app) — read through the command as a support agent would,
and checked against what ``replay --offline`` decides for the same input.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from intentstream.stream import codec
from intentstream.stream.cli import main
from intentstream.stream.contract.dead_letter import iter_lines
from intentstream.stream.engine.offline import OfflineRunner
from intentstream.stream.explain.story import explain
from intentstream.stream.explain.trace import trace_offline
from intentstream.stream.settings import FatigueSettings, PolicySettings, RedisSettings, Settings

TZ = "Asia/Shanghai"
USER = "u-sh"
#: no holdout group and no learning policy: every status is the fatigue policy's
SETTINGS = Settings.defaults(policy=PolicySettings.defaults(enabled=False), fatigue=FatigueSettings.defaults(holdout_share=0.0))
OVERRIDE = "[policy]\nenabled = false\n[fatigue]\nholdout_share = 0.0\n"


def local(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


def week() -> list[dict[str, Any]]:
    """The user's events, in arrival order (local times in Shanghai), and a neighbour's."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("2026-01-06T09:50", "app_open", {}),
        ("2026-01-06T09:52", "page_view", {}),
        ("2026-01-06T09:53", "page_view", {}),
        ("2026-01-06T09:54", "page_view", {}),
        ("2026-01-06T09:55", "unsubscribe", {"props": {"channel": "sms"}}),
        ("2026-01-06T10:00", "add_to_cart", {"item_id": "sku-1"}),  # cart_abandoned at 10:30: push 1
        ("2026-01-06T11:00", "payment_submit", {"amount": 30.0, "currency": "CNY"}),  # payment_stalled at 11:15: push 2
        ("2026-01-06T11:40", "page_view", {}),
        ("2026-01-06T12:00", "kyc_rejected", {}),  # third message in 24 h: global_cap
        ("2026-01-07T22:00", "add_to_cart", {"item_id": "sku-2"}),  # 22:30 local: deferred to 08:00, push 3
        ("2026-01-08T09:00", "page_view", {}),
        ("2026-01-09T10:00", "add_to_cart", {"item_id": "sku-3"}),  # push 3/3 in 7 days: in_app
        ("2026-01-09T10:40", "page_view", {}),
        ("2026-01-09T11:00", "payment_success", {"amount": 30.0, "currency": "CNY"}),
        ("2026-01-09T12:00", "page_view", {}),
        ("2026-01-14T12:00", "page_view", {}),
    ]
    events = [{"event_id": f"e{i}", "user_id": USER, "ts": local(t), "type": typ, "tz": TZ, **f} for i, (t, typ, f) in enumerate(steps, 1)]
    events.insert(3, {"event_id": "n1", "user_id": "neighbour", "ts": local("2026-01-06T09:53"), "type": "page_view"})
    return events


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    clicks = tmp_path / "clicks.jsonl"
    clicks.write_bytes(b"".join(codec.dumps_line(e) for e in week()))
    cfg = tmp_path / "policy.toml"
    cfg.write_text(OVERRIDE)
    return clicks, cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def block(text: str, headline: str) -> str:
    """The lines of the decision block that starts with ``headline``."""
    start = text.index(headline)
    end = text.find("DECISION", start + len(headline))
    return text[start : end if end >= 0 else len(text)]


def test_the_text_shows_each_check_with_its_counters(files, capsys):
    clicks, cfg = files
    code, out, _ = run(capsys, USER, "--input", str(clicks), "--config", str(cfg))
    assert code == 0
    assert "times on the user's clock: Asia/Shanghai" in out
    capped = block(out, "DECISION kyc_rejected: suppressed: global_cap")
    assert "all channels 2/2 in 24 h FULL" in capped and "all channels 2/5 in 7 days ok" in capped
    assert "opted out of sms: removes sms of in_app, email, sms" in capped
    deferred = block(out, "DECISION cart_abandoned: deferred on push to 08:00 on 2026-01-08 (quiet_hours)")
    assert "22:30 local (Asia/Shanghai), quiet hours 22:00–08:00 for push, sms: deferred to 08:00 on 2026-01-08" in deferred
    assert "push 2/3 in 7 days ok (at 08:00 on 2026-01-08) ← chosen" in deferred
    assert "previous cart_abandoned at 10:30 on 2026-01-06, 36 h 00 min before; 24 h cooldown: clear" in deferred
    assert "released       sent on push at 08:00 on 2026-01-08" in deferred
    assert "coupon 1/1 in 7 days FULL: withheld (fatigue_cap)" in deferred
    fallback = block(out, "DECISION cart_abandoned: sent on in_app, fallback from push")
    assert "push 3/3 in 7 days FULL; in_app 0/3 in 7 days ok ← chosen" in fallback
    assert "fallback       push (push 3/3 in 7 days) → in_app" in fallback
    assert "holdout-v2/cart_abandoned: treatment (holdout share 0%)" in fallback
    assert "converted at 11:00" in fallback
    assert "note" not in fallback  # the recomputation agrees with the engine
    assert "timer cart_abandoned armed by add_to_cart e12: due 10:30" in out
    assert "page_view ×3 (until 09:54)" in out


def test_the_decisions_are_those_of_replay_offline(files):
    clicks, _ = files
    with clicks.open("rb") as fh:
        replayed = [codec.loads(v) for t, v in OfflineRunner(SETTINGS).run(iter_lines(fh)) if t == "actions.audit"]
    with clicks.open("rb") as fh:
        trace = trace_offline(iter_lines(fh), USER, SETTINGS)
    assert trace.audit == [r for r in replayed if r["user_id"] == USER]
    ex = explain(trace, SETTINGS)
    assert [(d.record["trigger"], d.record["status"], d.record["reason"]) for d in ex.decisions] == [
        ("cart_abandoned", "sent", None),
        ("payment_stalled", "sent", None),
        ("kyc_rejected", "suppressed", "global_cap"),
        ("cart_abandoned", "deferred", "quiet_hours"),
        ("cart_abandoned", "sent", None),
    ]
    assert all(d.agrees for d in ex.decisions)
    assert all(d.outcome is not None for d in ex.decisions)


def test_json_carries_the_counters(files, capsys):
    clicks, cfg = files
    code, out, _ = run(capsys, USER, "--input", str(clicks), "--config", str(cfg), "--json")
    assert code == 0
    doc = codec.loads(out)
    capped = doc["decisions"][2]
    assert capped["decision"]["reason"] == "global_cap" and capped["global_verdict"] == "global_cap"
    assert capped["global_caps"][0] == {"scope": "all channels", "used": 2, "cap": 2, "window": "24 h", "fits": False}
    fallback = doc["decisions"][4]
    assert fallback["channels"][0]["cap"] == {"scope": "push", "used": 3, "cap": 3, "window": "7 days", "fits": False}
    assert doc["decisions"][3]["clock"]["local"].startswith("2026-01-07T22:30") and doc["decisions"][3]["clock"]["quiet"] is True


def test_html_is_one_self_contained_page(files, capsys, tmp_path):
    clicks, cfg = files
    page = tmp_path / "u.html"
    code, _, _ = run(capsys, USER, "--input", str(clicks), "--config", str(cfg), "--format", "html", "--out", str(page))
    html = page.read_text()
    assert code == 0 and html.startswith("<!doctype html>")
    assert "<script" not in html and "http" not in html and "<style>" in html
    assert 'all channels 2/2 in 24 h <span class="full">FULL</span>' in html


def test_an_unknown_user_and_a_missing_file(files, capsys, tmp_path):
    clicks, _ = files
    code, out, err = run(capsys, "nobody", "--input", str(clicks))
    assert (code, out) == (1, "") and err.count("\n") == 1 and "nobody" in err
    code, out, err = run(capsys, USER, "--input", str(tmp_path / "missing.jsonl"))
    assert (code, out) == (2, "") and err.count("\n") == 1 and "missing.jsonl" in err


# --------------------------------------------------------------------------- live mode (no broker needed)


class FakeRedis:
    """GET and ZRANGE ... WITHSCORES through a pipeline: what :func:`read_state` uses."""

    def __init__(self, strings: dict[str, bytes], zsets: dict[str, list[tuple[bytes, float]]]) -> None:
        self.strings, self.zsets, self.calls = strings, zsets, []

    def pipeline(self, transaction: bool = True) -> FakeRedis:
        self.calls = []
        return self

    def get(self, key: str) -> None:
        self.calls.append(self.strings.get(key))

    def zrange(self, key: str, start: int, end: int, withscores: bool = False) -> None:
        self.calls.append(self.zsets.get(key, []))

    def execute(self) -> list[Any]:
        return self.calls


def test_live_state_counters_timers_and_cooldowns_are_shown_last(files, capsys):
    from intentstream.stream.engine.user_state import UserState
    from intentstream.stream.explain.html import render_html
    from intentstream.stream.explain.live import read_state
    from intentstream.stream.explain.text import render_text
    from intentstream.stream.sessions.sessionizer import SessionConfig
    from intentstream.stream.state.redis import keys
    from intentstream.stream.state.sessions import PartitionMeta
    from intentstream.stream.triggers.state import Timer

    clicks, _ = files
    now = local("2026-01-14T12:00")
    st = UserState(USER)
    st.hi = 41
    st.trig.timers["cart"] = Timer(now + 1_800_000, ("e99",), {})
    p, hour = "is", 3_600_000
    sent = [(b"a1", float(now - 3 * hour)), (b"a2", float(now - 48 * hour))]
    client = FakeRedis(
        {keys.user_state(p, USER): st.dump(SessionConfig.from_settings()), keys.partition_meta(p, 2): PartitionMeta(wm=now).dump(),
         keys.cooldown_key(p, USER, "cart_abandoned"): str(now - hour).encode()},
        {keys.channel_key(p, USER, "push"): sent, keys.messages_key(p, USER): sent},
    )  # fmt: skip
    settings = Settings.defaults(redis=RedisSettings.defaults(key_prefix=p))
    state = read_state(client, settings, USER, 2)
    assert (state.found, state.at, state.applied, state.timers) == (True, now, 41, (("cart_abandoned", now + 1_800_000, False),))
    caps = {c.scope + (f" {c.window_ms}" if c.scope == "all channels" else ""): c.text() for c in state.counts}
    assert caps["push"] == "push 2/3 in 7 days" and caps["sms"] == "sms 0/3 in 7 days"
    assert caps[f"all channels {24 * hour}"] == "all channels 1/2 in 24 h" and caps[f"all channels {7 * 24 * hour}"] == "all channels 2/5 in 7 days"
    assert state.cooldowns == (("cart_abandoned", now - hour, now + 23 * hour),)
    with clicks.open("rb") as fh:
        trace = trace_offline(iter_lines(fh), USER, SETTINGS)
    trace.live = state
    ex = explain(trace, SETTINGS)
    text = render_text(ex)
    tail = text[text.index("NOW in Redis: partition 2, watermark 12:00 on 2026-01-14") :]
    assert "timers         cart_abandoned due 12:30" in tail and "push 2/3 in 7 days ok" in tail
    assert "cooldowns      cart_abandoned since 11:00, until 11:00 on 2026-01-15" in tail
    assert "clickstream offset 41 applied last" in tail and "DECISION" not in tail
    assert "NOW in Redis" in render_html(ex) and ex.to_dict()["now"]["caps"][0]["scope"] == "email"
    assert "now" not in explain(trace_offline([], USER), SETTINGS).to_dict()


def test_live_arguments_and_an_unreachable_broker(capsys, monkeypatch):
    from intentstream.stream.explain import live

    code, out, err = run(capsys, USER)
    assert (code, out) == (2, "") and "--input CLICKSTREAM.jsonl or --live" in err
    code, out, err = run(capsys, USER, "--live", "--input", "x.jsonl")
    assert (code, out) == (2, "") and "one of them" in err
    with pytest.raises(SystemExit):
        run(capsys, USER, "--live", "--since", "3x")
    assert "not an age: '3x'" in capsys.readouterr().err
    monkeypatch.setattr(live, "BOOTSTRAP_TIMEOUT_MS", 300)
    monkeypatch.setenv("INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    code, out, err = run(capsys, USER, "--live")
    assert (code, out) == (2, "") and err.startswith("intentstream explain: Kafka at 127.0.0.1:1: ") and err.count("\n") == 1
