"""The worker end to end on the local stack, against same-run baselines.

    python -m bench worker            (or: python -m bench.worker [--cases ...] [--profile])

Cases (see bench/README.md for the method and the targets):

1. ``throughput`` — a bare Faust agent (bench/bare_app.py: the same Faust app, topic and
   batching, only ``parse_event``; the baseline) against ``intentstream worker``, each
   consuming the same pre-loaded topic under a fresh consumer group. events/s =
   events committed between the first and the last observation of the group's committed
   offsets / the time between (start-up and group join are not counted).
2. ``offline`` — :class:`intentstream.stream.engine.offline.OfflineRunner` (sessions, segments, triggers and
   decisions, in-memory state, one thread) on a generated trace of >= 1M events against
   ``parse_event`` alone on the same lines.
3. ``latency`` — event -> decision at a fixed input rate of half the measured maximum,
   with the default settings: ``kyc_rejected`` events (decided on arrival) stamped with
   the wall clock, latency = the audit record's CreateTime - the input record's
   CreateTime, matched by evidence id; and ``cart_abandoned`` timers, latency = the audit
   record's CreateTime - the moment the deadline fell due (deadline + allowed lateness).
4. ``memory`` — worker RSS and Redis bytes per active user after 100k users (a few
   events each, all sessions still open) were consumed.
5. ``scaling`` — one against two worker processes on the same 6-partition topic.

``--profile`` adds a run of the full worker with wall-clock timers
(bench/_timed_worker.py) and, when installed, a py-spy profile: where the time goes.
Every deployment has its own topics, consumer group and Redis key prefix (environment
overrides) and is removed afterwards; worker processes are killed in ``finally``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import _harness as h
from bench.offline import TARGETS as OFFLINE_TARGETS
from bench.common import Result, measure_rate, print_table
from intentstream.stream.contract.events import Event, parse_event
from intentstream.stream.synth.clickstream import generate_lines
from intentstream.stream.synth.config import GeneratorConfig

PARTITIONS = 6
#: Both the bare app and the worker commit consumed offsets every 0.2 s instead of 1 s,
#: so the committed offsets the benchmark watches show progress to within 0.2 s.
FAST_COMMIT = {"INTENTSTREAM_WORKER__COMMIT_INTERVAL_S": "0.2"}
CASES = ("throughput", "scaling", "offline", "latency", "memory")
#: latency case: a timer-fired decision falls due this long after its add_to_cart is sent
LEAD_S = 2.0


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="python -m bench.worker")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--users", type=int, default=2500, help="throughput/scaling trace: users x 1 day (~14 events each)")
    ap.add_argument("--repeats", type=int, default=3, help="throughput/scaling runs of each kind")
    ap.add_argument("--offline-users", type=int, default=18000, help="offline trace: users x --offline-days (~1.02M events)")
    ap.add_argument("--offline-days", type=int, default=7)
    ap.add_argument("--offline-repeats", type=int, default=2)
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--latency-rate", type=float, default=None, help="events/s (default: half the measured worker maximum)")
    ap.add_argument("--kyc-share", type=float, default=0.03, help="share of kyc_rejected probes in the latency input (and as many add_to_cart timer probes)")
    ap.add_argument("--memory-users", type=int, default=100_000)
    ap.add_argument("--memory-events", type=int, default=2, help="events per user in the memory case")
    ap.add_argument("--memory-budget-s", type=float, default=120.0, help="time budget for consuming the memory trace")
    ap.add_argument("--profile", action="store_true", help="also: where the worker's time goes (timers, py-spy)")
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}")

    results: list[Result] = []
    info = h.stack_info()
    pids = h.stack_pids(info)
    max_rate: float | None = None
    with h.stack_lease(info):
        if {"throughput", "scaling"} & set(cases) or args.profile:
            out = guarded("throughput/scaling", lambda: throughput_and_scaling(args, cases, pids))
            if out:
                results += out[0]
                max_rate = out[1]
        if "offline" in cases:
            results += guarded("offline", lambda: offline(args)) or []
        if "latency" in cases:
            results += guarded("latency", lambda: latency(args, max_rate)) or []
        if "memory" in cases:
            results += guarded("memory", lambda: memory(args, pids)) or []
    return results


def guarded(name: str, fn: Callable[[], object]) -> object:
    """Run one case; a failure is printed and the other cases still run."""
    started = time.perf_counter()
    try:
        return fn()
    except Exception:
        print(f"\n## {name}: FAILED after {time.perf_counter() - started:.0f}s\n\n```\n{traceback.format_exc()[-4000:]}```")
        return None
    finally:
        print(f"\n({name}: {time.perf_counter() - started:.0f}s)", flush=True)


# --------------------------------------------------------------------------- traces


def trace_records(cfg: GeneratorConfig) -> list[tuple[bytes, bytes, int]]:
    """(key, value, event time) of each valid generated line, as replay sends them."""
    out = []
    for line in generate_lines(cfg):
        raw = line.rstrip(b"\n")
        ev = parse_event(raw)
        if type(ev) is Event:
            out.append((ev.user_id.encode(), raw, ev.ts_ms))
    return out


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)] if s else float("nan")


def target(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# issue 14's targets, one place
THROUGHPUT_RATIO = 0.7  # full worker / bare Faust agent (and how far 0.85x is)
SCALING_RATIO = 1.8  # 2 workers / 1
OFFLINE_EVENTS_S = OFFLINE_TARGETS["generated"]
LATENCY_P99_MS = 100  # or the transport floor's p99 + 50 ms when that is higher
REDIS_BYTES_PER_USER = 1024


# --------------------------------------------------------------------------- 1 + 5


@dataclass
class Run:
    rate: float
    seconds: float
    cores: dict[str, float]
    peak_rss: int


def throughput_and_scaling(args: argparse.Namespace, cases: list[str], pids: dict[str, int]) -> tuple[list[Result], float | None]:
    settings = h.settings_for()
    cfg = GeneratorConfig(users=args.users, days=1, seed=7)
    records = trace_records(cfg)
    topic = f"bench.worker.{h.run_id()}.click"
    h.create_topic(settings, topic, PARTITIONS)
    kinds = []
    if "throughput" in cases:
        kinds += ["bare", "full"]
    if "scaling" in cases:
        kinds += [k for k in ("full", "full2") if k not in kinds]
    runs: dict[str, list[Run]] = {k: [] for k in kinds}
    results: list[Result] = []
    try:
        started = time.perf_counter()
        h.produce(settings, topic, records)
        ends = h.end_offsets(settings, topic)
        n = sum(ends.values())
        print(f"\n(pre-loaded {n:,} events into {topic} in {time.perf_counter() - started:.1f}s)", flush=True)
        timeout = max(120.0, n / 300)
        for i in range(args.repeats):
            shift = i % max(1, len(kinds))
            for kind in kinds[shift:] + kinds[:shift]:  # rotate the order between repeats
                runs[kind].append(throughput_run(topic, ends, kind, pids, timeout))
        if "throughput" in cases:
            results += throughput_table(runs, n, args.repeats)
        if "scaling" in cases:
            results += scaling_table(runs, n, args.repeats)
        if args.profile:
            results += profile_run(topic, ends, timeout)
    finally:
        h.delete_topics(settings, [topic])
    max_rate = statistics.median(r.rate for r in runs["full"]) if runs.get("full") else None
    return results, max_rate


def throughput_table(runs: dict[str, list[Run]], n: int, repeats: int) -> list[Result]:
    base = "bare Faust agent: take_events + parse_event (baseline)"
    full = "intentstream worker: engine + Redis state + outbox + personas writer"
    res = [Result(base, "events/s", [r.rate for r in runs["bare"]]),
           Result(full, "events/s", [r.rate for r in runs["full"]], base)]  # fmt: skip
    ratio = res[1].median / res[0].median
    print_table(
        f"Worker throughput, one process each: {n:,} generated events pre-loaded on {PARTITIONS} partitions, "
        f"events/s between the first and last committed-offset observation (commit_interval_s=0.2 for both), {repeats} runs",
        res,
    )
    print(f"- target full >= {THROUGHPUT_RATIO}x bare: {ratio:.2f}x — {target(ratio >= THROUGHPUT_RATIO)}; "
          f"0.85x would need {0.85 * res[0].median:,.0f} events/s ({0.85 / max(ratio, 1e-9):.2f}x today's)")
    for kind in ("bare", "full"):
        print(f"- {kind}: " + cpu_note(runs[kind]) + f"; peak RSS {statistics.median(r.peak_rss for r in runs[kind]) / 2**20:,.0f} MB")
    return res


def scaling_table(runs: dict[str, list[Run]], n: int, repeats: int) -> list[Result]:
    one, two = "1 worker process, 6 partitions (baseline)", "2 worker processes, 3 partitions each"
    res = [Result(one, "events/s", [r.rate for r in runs["full"]]), Result(two, "events/s", [r.rate for r in runs["full2"]], one)]
    ratio = res[1].median / res[0].median
    print_table(
        f"Scaling: intentstream worker, 1 vs 2 processes in one consumer group, the same {n:,} pre-loaded events, "
        f"{repeats} runs (2 workers: timed from the group's first stable state with both members)",
        res,
    )
    print(f"- target 2 workers >= {SCALING_RATIO}x one: {ratio:.2f}x — {target(ratio >= SCALING_RATIO)}")
    print(f"- 1 worker: {cpu_note(runs['full'])}")
    print(f"- 2 workers: {cpu_note(runs['full2'])}")
    return res


def cpu_note(runs: list[Run]) -> str:
    names = [k for k in ("workers", "kafka", "redis", "bench") if any(k in r.cores for r in runs)]
    parts = [f"{k} {statistics.median(r.cores.get(k, 0.0) for r in runs):.2f}" for k in names]
    total = statistics.median(sum(r.cores.get(k, 0.0) for k in names) for r in runs)
    return f"CPU cores used in the timed window (median): {', '.join(parts)}; total {total:.2f} of {os.cpu_count()}"


def throughput_run(
    topic: str, ends: dict[int, int], kind: str, pids: dict[str, int] | dict[str, list[int]], timeout: float,
    workers: int | None = None, env: dict[str, str] | None = None,
) -> Run:
    """One timed run: ``workers`` processes (default: 2 for ``full2``, else 1) of ``kind``
    under a fresh group; ``env`` adds settings (bench/cluster.py: the Kafka cluster's)."""
    workers = workers or (2 if kind == "full2" else 1)
    d = h.Deployment(f"tp{kind}", clickstream=topic, env={**FAST_COMMIT, **(env or {})})
    with d:
        if kind != "bare":
            d.create_topics()
        procs = [d.start("bare" if kind == "bare" else "full") for _ in range(workers)]
        stack = {k: v if isinstance(v, list) else [v] for k, v in pids.items()}
        watch = {"workers": [p.pid for p in procs], "bench": [os.getpid()], **stack}
        cu = h.wait_caught_up(d, ends, members=workers, timeout_s=timeout, watch=watch)
        peak = sum(h.rss_bytes(p.pid)[1] for p in procs)
    return Run(cu.rate, cu.seconds, {k: cu.cores(k) for k in watch}, peak)


# --------------------------------------------------------------------------- --profile


def profile_run(topic: str, ends: dict[int, int], timeout: float) -> list[Result]:
    """The full worker with wall-clock timers (and py-spy when installed) on the same topic."""
    d = h.Deployment("tpprof", clickstream=topic, env=FAST_COMMIT)
    timing = d.tmp / "timing.json"
    snaps: list[dict] = []

    spy_exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spy_out = d.tmp / "pyspy.txt"
    spy: list[subprocess.Popen] = []

    def snapshot(now: float, committed: int) -> None:
        try:
            snaps.append(json.loads(timing.read_text()))
        except (OSError, ValueError):
            pass
        if committed > 0 and not spy and Path(spy_exe).exists():  # profile the steady state only
            spy.append(subprocess.Popen([spy_exe, "record", "-p", str(proc.pid), "-o", str(spy_out), "-f", "raw", "-r", "100", "--gil", "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip

    with d:
        d.create_topics()
        proc = d.start("timed", {"BENCH_TIMING_FILE": str(timing)})
        cu = h.wait_caught_up(d, ends, timeout_s=timeout, watch={"worker": [proc.pid]}, on_poll=snapshot)
        time.sleep(0.3)
        snapshot(0, 0)
        for p in spy:
            p.send_signal(2)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                h.stop_process(p)
        lines = spy_out.read_text().splitlines() if spy_out.exists() else []
        d.stop()
    first = next((s for s in snaps if s["totals"].get("events", 0) > 0), None)
    last = snaps[-1] if snaps else None
    if not first or not last or last["totals"]["events"] <= first["totals"]["events"]:
        print("\n(profile: no timing snapshots)")
        return []
    events = int(last["totals"]["events"] - first["totals"]["events"])
    wall = last["t"] - first["t"]

    def delta(prefix: str) -> float:
        return sum(v - first["totals"].get(k, 0.0) for k, v in last["totals"].items() if k.startswith(prefix))

    handle = delta("agent:")
    engine = delta("engine step")
    redis_in = delta("redis session store (in") + delta("redis fatigue ledger (in")
    ledger_calls = sum(v - first["calls"].get(k, 0) for k, v in last["calls"].items() if k.startswith("redis fatigue ledger"))
    publish = delta("publish:")
    redis_out = delta("redis outbox (outside") + delta("redis session store (outside")
    tick = delta("idle timer")
    rows = [
        ("engine compute (sessions, segments, triggers, decisions; in its thread)", engine - redis_in),
        ("engine's Redis round trips (due index, MGET, MULTI/EXEC commit, fatigue EVALSHA)", redis_in),
        ("outbox publish: Kafka send + acks (acks=all, linger 5 ms), thread hops", publish - redis_out),
        ("outbox read + ack in Redis", redis_out),
        ("agent step overhead: lock, asyncio.to_thread hops, recovery", handle - engine - publish),
        ("idle timer (outbox flush, idle watermarks)", tick),
        ("outside the steps: Faust fetch, take_events batching, event loop", wall - handle - tick),
    ]
    res = [Result(name, "µs/event", [max(0.0, v) / events * 1e6]) for name, v in rows]
    print_table(
        f"Where the full worker's wall-clock time goes: {events:,} events in {wall:.1f}s ({events / wall:,.0f} events/s, "
        f"timed worker {cu.rate:,.0f} events/s by offsets, {cu.cores('worker'):.2f} cores of CPU); "
        f"{ledger_calls / events * 1000:.0f} fatigue-ledger calls per 1000 events",
        res,
    )
    for name, v in rows:
        print(f"- {v / wall:6.1%} of wall time: {name}")
    if lines:
        print_pyspy(lines)
    return res


def print_pyspy(lines: list[str]) -> None:
    """py-spy --gil samples grouped by the package of the running (leaf) frame, and by the
    work each belongs to (:data:`OWNERS`)."""
    by_pkg: Counter[str] = Counter()
    by_fn: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        leaf = stack.split(";")[-1].strip() or "(no Python frame)"
        total += n
        by_fn[leaf] += n
        by_pkg[_package(leaf)] += n
        by_owner[_owner(stack)] += n
    if not total:
        return
    print(f"\npy-spy (--gil, {total:,} samples: Python holding the GIL), by package of the running frame:")
    print("- " + ", ".join(f"{pkg} {n / total:.0%}" for pkg, n in by_pkg.most_common(10)))
    print("- top functions: " + "; ".join(f"{fn} {n / total:.1%}" for fn, n in by_fn.most_common(8)))
    print("- by the work a sample belongs to (its outermost known frame): " + ", ".join(f"{o} {n / total:.0%}" for o, n in by_owner.most_common()))


#: (what a sample belongs to, a frame that marks it): the first marker found from the
#: root of the stack wins
OWNERS = (
    ("persona writer", "PersonaWriter."),
    ("ops metrics", "agents/monitoring.py"),
    ("engine step", "PartitionEngine."),
    ("outbox publish", "Pipeline.publish"),
    ("outbox recovery", "Pipeline.recover"),
    ("idle tick", "Pipeline.tick"),
    ("Kafka consumer thread", "AIOKafkaConsumerThread"),
    ("Kafka producer", "aiokafka/producer/"),
    ("agent loop (take_events, handle)", "sessionize"),
)


def _owner(stack: str) -> str:
    for label, marker in OWNERS:
        if marker in stack:
            return label
    return "other (event loop, Faust, threads)"


def _package(frame: str) -> str:
    """``Fn (faust/streams.py:12)`` -> ``faust``; ``Fn (threading.py:3)`` -> ``threading``
    (py-spy shortens paths relative to sys.path)."""
    if frame.startswith("(no"):
        return frame
    path = frame[frame.rfind("(") + 1 : frame.rfind(":")] if "(" in frame and ":" in frame else frame
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(h.ROOT)):
        path = path[len(str(h.ROOT)) + 1 :]
    if path.startswith("<"):
        return "<frozen importlib>" if "importlib" in path else path
    head = path.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


# --------------------------------------------------------------------------- 2


def offline(args: argparse.Namespace) -> list[Result]:
    from intentstream.stream.engine.offline import OfflineRunner
    from intentstream.stream.settings import load_settings

    cfg = GeneratorConfig(users=args.offline_users, days=args.offline_days, seed=1)
    lines = [line.rstrip(b"\n") for line in generate_lines(cfg)]
    n = len(lines)
    settings = load_settings(env={})  # the shipped defaults, every trigger enabled
    counters: Counter[str] = Counter()

    def parse_only() -> int:
        for raw in lines:
            parse_event(raw)
        return n

    def engine() -> int:
        runner = OfflineRunner(settings)
        outputs = sum(1 for _ in runner.run(enumerate(lines)))
        counters.clear()
        counters.update(runner.counters)
        counters["outputs"] = outputs
        return n

    base = "parse_event only (baseline)"
    res = [Result(base, "events/s", measure_rate(parse_only, 3))]
    gc.collect()
    res.append(Result("OfflineRunner: sessions, segments, triggers, decisions (memory store)", "events/s",
                      measure_rate(engine, args.offline_repeats), base))  # fmt: skip
    print_table(
        f"Offline replay, in-process engine, one thread: {n:,} generated events ({args.offline_users:,} users x {args.offline_days} days), "
        f"{settings.topics.partitions} simulated partitions, median of {args.offline_repeats} (a run takes ~{n / res[1].median:.0f}s; parse: 3)",
        res,
    )
    print(f"- target >= {OFFLINE_EVENTS_S:,} events/s: {res[1].median:,.0f} — {target(res[1].median >= OFFLINE_EVENTS_S)}")
    print(f"- per run: {counters['segments']:,} segments, {counters['decisions']:,} decisions, {counters['outputs']:,} outputs "
          f"(segments, actions, audit records)")  # fmt: skip
    lines.clear()  # free ~300 MB before the next case
    gc.collect()
    return res


# --------------------------------------------------------------------------- 3


class Collector(threading.Thread):
    """Reads the audit topic (evidence id -> record CreateTime) and the input topic
    (kyc event id -> (record CreateTime, wall time seen here)) while the run goes."""

    def __init__(self, settings, audit: str, clickstream: str) -> None:
        super().__init__(daemon=True, name="bench-collector")
        self.settings = settings
        self.topics = (audit, clickstream)
        self.decided: dict[str, int] = {}
        self.seen: dict[str, tuple[int, float]] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import TopicPartition

        from intentstream.agents.kafka import make_consumer

        try:
            consumer = make_consumer(self.settings, fetch_max_wait_ms=50)
            tps = [TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            audit = self.topics[0]
            self.ready.set()
            while not self.stop.is_set():
                for tp, batch in consumer.poll(timeout_ms=100).items():
                    now = time.time() * 1000
                    for rec in batch:
                        if tp.topic == audit:
                            for ev in orjson.loads(rec.value).get("evidence") or ():
                                self.decided.setdefault(ev, rec.timestamp)
                        elif b"kyc_rejected" in rec.value:
                            self.seen.setdefault(orjson.loads(rec.value)["event_id"], (rec.timestamp, now))
            consumer.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()


def latency(args: argparse.Namespace, max_rate: float | None) -> list[Result]:
    """Default settings. Two kinds of decision: ``kyc_rejected`` of a fresh user, fired by
    its event (decided on arrival); and ``cart_abandoned`` of a fresh user, fired by its
    timer. The add_to_cart is stamped cart_abandon_s + allowed_lateness_s - LEAD_S in the
    past (a late event), so its deadline falls due LEAD_S after it was sent, when the
    ordinary traffic (stamped with the wall clock) moves the partition's watermark
    (progress - allowed lateness) past it; its latency counts from that moment,
    deadline + allowed lateness, to the decision."""
    from intentstream.agents.kafka import make_producer

    rate = args.latency_rate or (max_rate / 2 if max_rate else 1500.0)
    seconds = args.latency_seconds
    n_total = int(rate * seconds) + 1
    every = max(1, round(1 / args.kyc_share))
    # ordinary traffic: generated events (realistic sizes and types), re-stamped with the wall clock
    base = [orjson.loads(line) for line in generate_lines(GeneratorConfig(users=max(200, n_total // 10), days=1, seed=11))]
    if len(base) < n_total:
        raise RuntimeError(f"latency: {len(base)} base events < {n_total}")
    d = h.Deployment("lat")  # the shipped defaults: allowed_lateness_s = 300
    lateness_ms = d.settings.sessions.allowed_lateness_s * 1000
    backdate_ms = d.settings.triggers.cart_abandon_s * 1000 + lateness_ms - int(LEAD_S * 1000)
    rid = d.id
    sent: dict[str, int] = {}  # kyc event id -> input record timestamp
    due: dict[str, int] = {}  # cart event id -> wall-clock moment its deadline falls due
    windows: list[list[str]] = [[], [], []]
    with d:
        d.create_topics()
        t = d.settings.topics
        collector = Collector(d.settings, t.audit, t.clickstream)
        collector.start()
        collector.ready.wait(60)
        d.start("full")
        producer = make_producer(d.settings, linger_ms=0)
        try:
            topic = t.clickstream

            def send(obj: dict, backdate: int = 0) -> int:
                now = int(time.time() * 1000)
                obj["ts"] = now - backdate
                producer.send(topic, value=orjson.dumps(obj), key=obj["user_id"].encode(), timestamp_ms=now)
                return now

            # ready: the worker decided a first kyc_rejected (group joined, Redis script loaded)
            deadline = time.monotonic() + 90
            k = 0
            while not any(e.startswith(f"{rid}-ping") for e in collector.decided):
                if time.monotonic() > deadline or collector.error:
                    raise RuntimeError(f"latency: worker not ready ({collector.error!r})\n{d.logs()}")
                d.check_alive()
                send({"event_id": f"{rid}-ping-{k}", "user_id": f"{rid}-pu{k}", "type": "kyc_rejected"})
                producer.flush()
                k += 1
                time.sleep(0.25)
            # the measured run: a fixed rate, paced every 2 ms
            started = time.monotonic()
            i = j = 0
            while True:
                elapsed = time.monotonic() - started
                if elapsed >= seconds:
                    break
                due_i = min(n_total, int(elapsed * rate) + 1)
                while i < due_i:
                    window = windows[min(2, int(3 * elapsed / seconds))]
                    if i % every == 0:
                        eid = f"{rid}-k{i}"
                        sent[eid] = send({"event_id": eid, "user_id": f"{rid}-u{i}", "type": "kyc_rejected"})
                        window.append(eid)
                    elif i % every == every // 2 and elapsed < seconds - LEAD_S - 1:
                        eid = f"{rid}-c{i}"
                        at = send({"event_id": eid, "user_id": f"{rid}-c{i}", "type": "add_to_cart", "item_id": "sku-1"}, backdate_ms)
                        due[eid] = at - backdate_ms + d.settings.triggers.cart_abandon_s * 1000 + lateness_ms
                        window.append(eid)
                    else:
                        send(dict(base[j]))
                        j += 1
                    i += 1
                time.sleep(0.002)
            sent_rate = i / (time.monotonic() - started)
            # a last event on every partition: the watermark passes every deadline of the run
            time.sleep(0.01)
            for k in range(60):
                send({"event_id": f"{rid}-flush-{k}", "user_id": f"{rid}-fu{k}", "type": "page_view"})
            producer.flush()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(e in collector.decided for e in (*sent, *due)):
                d.check_alive()
                time.sleep(0.2)
        finally:
            producer.close(timeout=5)
            collector.stop.set()
            collector.join(10)
            d.stop()
    immediate = {e: collector.decided[e] - ts for e, ts in sent.items() if e in collector.decided}
    timer = {e: collector.decided[e] - at for e, at in due.items() if e in collector.decided}
    transport = [seen[1] - seen[0] for e in sent if (seen := collector.seen.get(e))]
    if not immediate or not timer:
        raise RuntimeError(f"latency: no decision matched ({len(immediate)} kyc_rejected, {len(timer)} cart_abandoned)")
    res = []
    for name, lat in (("kyc_rejected (fired by its event): event -> decision", immediate),
                      ("cart_abandoned (fired by its timer): due -> decision", timer)):  # fmt: skip
        per = [w for w in ([lat[e] for e in w if e in lat] for w in windows) if w]
        res += [Result(f"{name} p{q}", "ms", [pct(w, q) for w in per]) for q in (50, 95, 99)]
    res.append(Result("input record -> plain kafka-python consumer p50 (transport floor)", "ms", [pct(transport, 50)]))
    res.append(Result("input record -> plain kafka-python consumer p99 (transport floor)", "ms", [pct(transport, 99)]))
    print_table(
        f"Latency event -> decision with the DEFAULT settings (allowed_lateness_s={lateness_ms // 1000}), audit record CreateTime - "
        f"input record CreateTime (timer: - the moment the deadline fell due, deadline + allowed lateness), at {sent_rate:,.0f} events/s "
        f"= half the measured max ({'given' if args.latency_rate else 'measured'}), {seconds:.0f}s; median and min-max over 3 consecutive windows",
        res,
    )
    bound = max(LATENCY_P99_MS, pct(transport, 99) + 50)
    for name, lat, of in (("kyc_rejected", immediate, sent), ("cart_abandoned", timer, due)):
        v = list(lat.values())
        print(f"- {name}: all {len(v):,} matched of {len(of):,} sent: p50 {pct(v, 50):,.0f} ms, p95 {pct(v, 95):,.0f} ms, "
              f"p99 {pct(v, 99):,.0f} ms, max {max(v):,.0f} ms" + (f"; target p99 <= {bound:,.0f} ms (max of {LATENCY_P99_MS} and floor p99 + 50) — {target(pct(v, 99) <= bound)}" if name == "kyc_rejected" else ""))  # fmt: skip
    return res


# --------------------------------------------------------------------------- 4


def memory_trace(users: int, per_user: int) -> tuple[list[tuple[bytes, bytes, int]], int]:
    """The first ``per_user`` events of each of ``users`` generated users (1 day), their
    times squeezed 48x into the last ~30 minutes, so every session is still open at the end."""
    cfg = GeneratorConfig(users=users, days=1, seed=5)
    now = int(time.time() * 1000)
    t0 = now - 35 * 60_000
    start = cfg.start_ms
    taken: Counter[str] = Counter()
    out = []
    for line in generate_lines(cfg):
        obj = orjson.loads(line)
        u = obj["user_id"]
        if taken[u] >= per_user:
            continue
        taken[u] += 1
        ev = parse_event(line)
        if type(ev) is not Event:
            continue
        ts = t0 + (ev.ts_ms - start) // 48
        obj["ts"] = ts
        out.append((u.encode(), orjson.dumps(obj), ts))
    return out, len(taken)


def memory(args: argparse.Namespace, pids: dict[str, int]) -> list[Result]:
    from intentstream.stream.state.redis import keys

    started = time.perf_counter()
    records, users = memory_trace(args.memory_users, args.memory_events)
    gen_s = time.perf_counter() - started
    d = h.Deployment("mem")
    with d:
        d.create_topics()
        t = time.perf_counter()
        h.produce(d.settings, d.settings.topics.clickstream, records)
        ends = h.end_offsets(d.settings, d.settings.topics.clickstream)
        print(f"\n(memory trace: {len(records):,} events of {users:,} users generated in {gen_s:.0f}s, pre-loaded in {time.perf_counter() - t:.0f}s)", flush=True)
        client = h.redis_client(d.settings)
        before = client.info("memory")["used_memory"]
        proc = d.start("full")
        cu = h.wait_caught_up(d, ends, timeout_s=args.memory_budget_s, partial_ok=True, watch={"worker": [proc.pid]})
        rss, peak = h.rss_bytes(proc.pid)
        after = client.info("memory")["used_memory"]
        all_keys = h.prefix_keys(client, d.prefix)
        ses = [k for k in all_keys if k.endswith(b":ses")]
        n_users = len(ses)
        total_usage = sum(h.memory_usage(client, all_keys))
        sample = ses[:: max(1, len(ses) // 1000)]
        sample_usage = h.memory_usage(client, sample)
        open_users = sum(client.zcard(keys.partition_due(d.prefix, p)) for p in range(d.settings.topics.partitions))
        client.close()
    label = f"at {n_users:,} active users"
    if not cu.complete:
        label += f" (time budget {args.memory_budget_s:.0f}s hit: {cu.c1:,} of {cu.total:,} events consumed; per-user values extrapolate to {users:,})"
    res = [
        Result("Redis: all keys of the deployment (sum of MEMORY USAGE) per user", "B/user", [total_usage / max(1, n_users)]),
        Result("Redis: INFO used_memory growth per user", "B/user", [(after - before) / max(1, n_users)]),
        Result(f"Redis: one user's state key, MEMORY USAGE median of {len(sample)}", "B", [statistics.median(sample_usage) if sample_usage else 0]),
        Result(f"Redis: one user's state key, MEMORY USAGE p95 of {len(sample)}", "B", [pct(sample_usage, 95)]),
        Result("worker RSS at the end", "MB", [rss / 2**20]),
        Result("worker peak RSS", "MB", [peak / 2**20]),
    ]
    print_table(
        f"Memory {label}: {args.memory_events} generated events per user squeezed into the last 30 min (sessions open), "
        f"one worker, {cu.rate:,.0f} events/s, one run",
        res,
    )
    per_user = res[0].median
    print(f"- {open_users:,} of {n_users:,} users have a due time (open session or timer); Redis total {total_usage / 2**20:,.1f} MB, "
          f"used_memory growth {(after - before) / 2**20:,.1f} MB (other clients of this Redis add noise to the latter)")  # fmt: skip
    print(f"- target <= {REDIS_BYTES_PER_USER:,} B of Redis per active user: {per_user:,.0f} B — {target(per_user <= REDIS_BYTES_PER_USER)}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
