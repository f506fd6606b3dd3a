"""The explanation as aligned text, for a support agent ("why did I get this SMS?").

Times are on the user's clock (their latest time zone), one block per day; each
decision is a block of labelled lines, one per check, with the counters as they stood.
:func:`decision_lines` is shared with the HTML page.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from intentstream.stream.contract.events import record_ts, zone
from intentstream.stream.explain.checks import DecisionChecks, span
from intentstream.stream.explain.story import Explanation
from intentstream.stream.explain.timers import CANCELLED, MOVED, PENDING
from intentstream.stream.triggers.rules import CHURN_TRIGGER

LABEL = 14  # width of a decision block's labels


def on_clock(ms: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone(tz))


def when(ms: int, tz: str, ref: int | None = None) -> str:
    """``HH:MM``, followed by ``on YYYY-MM-DD`` unless it is ``ref``'s day."""
    t = on_clock(ms, tz)
    if ref is not None and on_clock(ref, tz).date() == t.date():
        return f"{t:%H:%M}"
    return f"{t:%H:%M} on {t:%Y-%m-%d}"


def _count(c: Any) -> str:
    return f"{c.text()} {'ok' if c.fits else 'FULL'}"


def headline(d: DecisionChecks, tz: str) -> str:
    """The decision in one line: what happened, and the reason in words."""
    r = d.record
    status, reason, ch = r["status"], r["reason"], r["channel"]
    t = d.decided_at
    if status == "sent":
        out = f"sent on {ch}"
    elif status == "deferred":
        out = f"deferred on {ch} to {when(record_ts(r['send_at']), tz, t)} ({reason})"
    elif status == "holdout":
        out = f"holdout: recorded, not sent (would have gone on {ch})"
    else:
        out = f"{status}: {reason}"
    if r["fallback_from"]:
        out += f", fallback from {r['fallback_from']}"
    return out


def decision_lines(d: DecisionChecks, tz: str) -> list[tuple[str, str]]:
    """(label, text) of every check of one decision, in the ledger's order."""
    r = d.record
    t = d.decided_at
    st = r["strategy"]
    pol = st.get("policy")
    rows: list[tuple[str, str]] = [("action", f"{r['action_id']}  evidence {', '.join(r['evidence'])}")]
    strategy = f"{st['key']} ({st['group']} group"
    strategy += f", persona rule {st['persona_rule']})" if st.get("persona_rule") else ")"
    if pol:
        est = "no estimate yet" if pol["estimate"] is None else f"estimate {pol['estimate']:.2%} per send"
        strategy += f"; policy {pol['mode']}: arm {pol['arm']}, {est} ({pol['sends']} sends)"
    else:
        strategy += "; policy off: the catalogue's choice"
    rows.append(("strategy", strategy))
    if r["persona"]:
        rows.append(("persona", r["persona"]["label"]))
    if r["reason"] == "stale":
        rows.append(("stale", "a late event revealed a moment long past: recorded, never sent, no cap or cooldown touched"))
    if r["reason"] == "roi_guard":
        rows.append(("ROI guard", "every strategy of the trigger is paused (converts below [policy] roi_min_conversion)"))
    offered = ", ".join(st.get("channels") or ()) or "-"
    consent = f"opted out of {', '.join(d.opt_outs)}" if d.opt_outs else "no opt-outs"
    if d.opted_out:
        consent += f": removes {', '.join(d.opted_out)} of {offered}"
    rows.append(("consent", consent + ("  → suppressed: opt_out" if r["reason"] == "opt_out" else "")))
    if d.cooldown_since is None:
        rows.append(("cooldown", f"no earlier {r['trigger']} message or holdout record: clear ({span(d.cooldown_ms)} cooldown)"))
    else:
        gap = t - d.cooldown_since
        verdict = "blocked  → suppressed: cooldown" if gap < d.cooldown_ms else "clear"
        rows.append(("cooldown", f"previous {r['trigger']} at {when(d.cooldown_since, tz, t)}, {_ago(gap)} before; {span(d.cooldown_ms)} cooldown: {verdict}"))
    exp = r.get("experiment") or {}
    rows.append(("holdout", f"{exp.get('id')}: {exp.get('arm')} (holdout share {d.holdout_share:.0%})"))
    rows.append(("local time", _quiet(d, tz)))
    if d.likely_hours:
        rows.append(("send time", f"likely hours {', '.join(f'{h:02d}h' for h in d.likely_hours)}" + _held(d, "send_time", tz)))
    if d.options:
        first = d.chosen
        rows.append(("channels", "; ".join(f"{_count(o.count)}" + (f" (at {when(o.send_at, tz, t)})" if o.held_by else "")
                                           + (" ← chosen" if o is first else "") for o in d.options)))  # fmt: skip
        if first is None:
            rows.append(("", "every remaining channel is at its cap  → suppressed: fatigue_cap"))
    if r["fallback_from"]:
        capped = next((o.count.text() for o in d.options if o.channel == r["fallback_from"]), "capped")
        why = "opted out" if r["fallback_from"] in d.opted_out else capped
        rows.append(("fallback", f"{r['fallback_from']} ({why}) → {r['channel']}"))
    if d.global_counts:
        rows.append(("global caps", "; ".join(_count(c) for c in d.global_counts) + _global_verdict(d)))
    if d.reserved_for:
        rows.append(("priority", "last free slot kept for pending " + ", ".join(f"{p} (due {when(due, tz, t)})" for p, due in d.reserved_for)))
    if d.coupon is not None:
        coupon = st.get("coupon")
        rows.append(("coupon", f"{_count(d.coupon)}: " + (f"granted {coupon['code']}" if coupon else f"withheld ({st.get('coupon_withheld')})")))
    for f in d.follow_ups:
        if f["status"] == "sent":
            rows.append(("released", f"sent on {f['channel']} at {when(record_ts(f['send_at']), tz, t)}"))
        else:
            rows.append(("cancelled", f"{f['reason']} before {when(record_ts(f['send_at']), tz, t)}: never sent"))
    for c in d.corrections:
        cor = c["correction"]
        rows.append(("correction", f"{cor['reason']}: goal {cor['goal_event_id']} at {when(record_ts(cor['goal_at']), tz, t)}; left out of measurement"))
    rows.append(("outcome", _outcome(d, tz)))
    if not d.agrees:
        v = d.recomputed
        rows.append(("note", f"recomputed from this user's events alone: {v.status}/{v.reason or '-'} on {v.channel or '-'} — "
                             "other users' events moved the partition's time differently"))  # fmt: skip
    return rows


def _ago(ms: int) -> str:
    h, m = divmod(ms // 60_000, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def _quiet(d: DecisionChecks, tz: str) -> str:
    c = d.clock
    text = f"{c.local:%H:%M} local ({c.tz}), quiet hours {c.quiet_start}–{c.quiet_end} for {', '.join(c.quiet_channels)}"
    held = _held(d, "quiet_hours", tz)
    return text + (held if held else (": inside" if c.quiet else ": outside"))


def _held(d: DecisionChecks, cause: str, tz: str) -> str:
    """``: deferred to HH:MM`` when ``cause`` moved the chosen channel's send time."""
    first = d.chosen
    if first is None or first.held_by != cause:
        return ""
    verb = "deferred" if d.record["status"] == "deferred" else "would defer"
    return f": {verb} to {when(first.send_at, tz, d.decided_at)}"


def _global_verdict(d: DecisionChecks) -> str:
    if d.global_verdict == "global_cap":
        return "  → suppressed: global_cap"
    if d.global_verdict == "priority":
        return "  → the last free slot is reserved"
    return ""


def _outcome(d: DecisionChecks, tz: str) -> str:
    o = d.outcome
    if o is None:
        return "window still open at the end of the input (no outcome record yet)"
    flags = ", ".join(f"{k} {'yes' if o[k] else 'no'}" for k in ("opened", "clicked", "dismissed"))
    conv = f"converted at {when(record_ts(o['converted_at']), tz, d.decided_at)}" if o["converted"] else "not converted"
    extra = "" if o["reason"] not in ("cooldown", "stale") and not o["corrected"] else " (not measured)"
    return f"window to {when(record_ts(o['window_end']), tz, d.decided_at)}: {flags}; {conv}{extra}"


def timeline(ex: Explanation) -> list[tuple[int, int, str, list[tuple[str, str]]]]:
    """(time, kind, headline, labelled rows) of every item in time order; kinds: 0 event,
    1 segment, 2 timer, 3 decision (the only kind with rows). Ties keep that order."""
    return sorted(_items(ex), key=lambda x: (x[0], x[1]))


def _items(ex: Explanation) -> Iterator[tuple[int, int, str, list[tuple[str, str]]]]:
    tz = ex.tz
    for e in ex.events:
        props = "  ".join(f"{k}={v}" for k, v in e.props)
        kind = f"{e.type} ×{e.count} (until {when(e.last, tz, e.first)})" if e.count > 1 else e.type
        yield e.first, 0, f"{kind:<28} {props}".rstrip(), []
    for s in ex.segments:
        yield record_ts(s["end"]), 1, (
            f"segment {when(record_ts(s['start']), tz)[:5]}–{when(record_ts(s['end']), tz)[:5]} {s['intent']} (strength {s['intent_strength']:.2f}, stage {s['behaviour_stage']}, "
            f"{s['main_activity']}, {s['interactions']} events) closed by {s['closed_by']}"
        ), []  # fmt: skip
    for n in ex.timers:
        if n.trigger == CHURN_TRIGGER and n.end == MOVED:
            continue  # every visit moves the churn timer: only the one that lasted is worth a line
        by = f"by {n.armed_type} {n.armed_by}" if n.armed_by else "by the churn cadence"
        pending = ", still pending at the end of the input" if n.end == PENDING else ""
        yield n.armed_at, 2, f"timer {n.trigger} armed {by}: due {when(n.due_ms, tz, n.armed_at)}{pending}" + (" (stale)" if n.stale else ""), []
        if n.end in (CANCELLED, MOVED) and n.ended_at is not None:
            cause = f"{n.ended_type} {n.ended_by}" if n.ended_by else "the horizon"
            yield n.ended_at, 2, f"timer {n.trigger} {n.end} by {cause} (was due {when(n.due_ms, tz, n.ended_at)})", []
    for d in ex.decisions:
        yield d.decided_at, 3, f"DECISION {d.record['trigger']}: {headline(d, tz)}", decision_lines(d, tz)


def header(ex: Explanation) -> list[str]:
    """The summary lines above the timeline."""
    s = ex.settings
    caps = ", ".join(f"{m} per {span(w * 1000)}" for w, m in s["global_caps"]) or "none"
    return [
        f"user {ex.user_id}  ({ex.source})",
        f"times on the user's clock: {ex.tz}",
        f"behaviour persona: {ex.persona or '-'}   events: {ex.n_events}   segments: {len(ex.segments)}   decisions: {len(ex.decisions)}",
        f"caps: {s['channel_cap']} per channel per {span(s['window_s'] * 1000)}; all channels: {caps}; "
        f"cooldown {span(s['cooldown_s'] * 1000)}; quiet hours {s['quiet_hours'].replace('-', '–')} ({', '.join(s['quiet_channels'])})",
    ]


def live_lines(ex: Explanation) -> tuple[str, list[tuple[str, str]]]:
    """Live mode's "now" block: the headline and (label, text) rows of the user's state in
    Redis — pending timers, held messages, cap counters and cooldowns at the partition's
    watermark (empty without live state)."""
    st = ex.live
    if st is None:
        return "", []
    tz = ex.tz
    at = "no watermark yet" if st.at is None else f"watermark {when(st.at, tz)}"
    head = f"NOW in Redis: partition {st.partition}, {at}" + ("" if st.found else "; no engine record for the user (new, or expired)")
    ref = st.at
    rows: list[tuple[str, str]] = [
        ("timers", "; ".join(f"{t} due {when(d, tz, ref)}" + (" (stale)" if s else "") for t, d, s in st.timers) or "none pending"),
        ("held", "; ".join(f"{a} {t} on {c or '-'} at {when(s, tz, ref)}" for a, t, c, s in st.held) or "nothing held for later"),
        ("channels", "; ".join(_count(c) for c in st.counts if c.scope != "all channels")),
    ]
    glob = [c for c in st.counts if c.scope == "all channels"]
    if glob:
        rows.append(("global caps", "; ".join(_count(c) for c in glob)))
    rows.append(("cooldowns", "; ".join(f"{t} since {when(s, tz, ref)}, until {when(u, tz, ref)}" for t, s, u in st.cooldowns) or "none running"))
    rows.append(("outcomes", f"{st.watching} attribution window(s) open"))
    rows.append(("input", f"clickstream offset {st.applied} applied last" if st.applied >= 0 else "no clickstream offset applied"))
    return head, rows


def render_text(ex: Explanation) -> str:
    """The whole explanation as text."""
    first, *rest = header(ex)
    out = [first, *(f"  {line}" for line in rest)]
    day = None
    for ms, _, head, rows in timeline(ex):
        t = on_clock(ms, ex.tz)
        if t.date() != day:
            day = t.date()
            out += ["", f"{t:%Y-%m-%d %a}"]
        out.append(f"  {t:%H:%M}  {head}")
        out += [f"             {label:<{LABEL}} {text}".rstrip() for label, text in rows]
    head, rows = live_lines(ex)
    if head:
        out += ["", head]
        out += [f"  {label:<{LABEL}} {text}".rstrip() for label, text in rows]
    return "\n".join(out) + "\n"
