"""Standard observability: the Prometheus rules and config in config/prometheus, the
Grafana dashboard and provisioning in config/grafana, and Debian's Prometheus scraping a
real worker.

promtool and prometheus come from Debian's ``prometheus`` package, which
``scripts/stack prometheus`` installs when missing (apt-get, as root); when that is
impossible these tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = ROOT / "scripts" / "stack"
PROM_DIR = ROOT / "config" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "intentstream.json"
GRAFANA_PROVISIONING = ROOT / "config" / "grafana" / "provisioning"


# --------------------------------------------------------------------------- promtool


@pytest.fixture(scope="session")
def prom_bins() -> dict[str, str]:
    """Paths of promtool and prometheus (installed through scripts/stack if missing)."""
    proc = subprocess.run(
        [sys.executable, str(STACK_SCRIPT), "prometheus"], cwd=ROOT, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"promtool/prometheus unavailable: scripts/stack prometheus exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout[proc.stdout.index("{") :])  # after "installing ..." lines


def promtool(bins: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bins["promtool"], *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules(prom_bins):
    proc = promtool(prom_bins, "check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_check_config(prom_bins):
    proc = promtool(prom_bins, "check", "config", str(PROM_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alerts.yml" in proc.stdout  # the rules file is found and checked with it


def test_promtool_rule_unit_tests(prom_bins):
    """config/prometheus/alerts_test.yml: rules fire on synthetic series, others stay silent."""
    text = ALERTS_TEST.read_text()
    assert text.count("exp_labels:") >= 2 and "exp_alerts: []" in text
    proc = promtool(prom_bins, "test", "rules", str(ALERTS_TEST))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_broken_rule_expectation_fails(prom_bins, tmp_path):
    """The unit tests can fail: an expectation that a silent rule fires is reported."""
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    (tmp_path / "t.yml").write_text(
        "rule_files: [alerts.yml]\nevaluation_interval: 1m\ntests:\n"
        "  - interval: 1m\n    input_series:\n"
        "      - series: 'intentstream_breaker_open{job=\"intentstream\", instance=\"w\"}'\n        values: '0x10'\n"
        "    alert_rule_test:\n      - eval_time: 5m\n        alertname: IntentstreamDecisionStorm\n"
        "        exp_alerts:\n          - exp_labels: {severity: critical, ops_alert: decision_storm, job: intentstream}\n"
    )
    proc = promtool(prom_bins, "test", "rules", str(tmp_path / "t.yml"))
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- what /metrics exposes


class _Acks:
    """An AIOKafkaProducer stand-in for the worker's Pipeline: every send is acked at
    the next offset of its topic partition; ``sent`` keeps (topic, value)."""

    def __init__(self) -> None:
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic, value=None, key=None, partition=None, headers=None):
        offset = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += 1
        self.sent.append((topic, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(topic=topic, partition=partition, offset=offset))
        return done


class _Unreachable:
    """The ops reporter's producer while Kafka is down."""

    async def send(self, topic, value=None, key=None):
        raise ConnectionError("broker down")


def _flaky_once():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("Redis down")
        return "ok"

    return fn


async def _worker_exposition() -> str:
    """GET /metrics of a worker that did everything once: the real Pipeline (in memory)
    runs a synthetic trace plus malformed lines through its engines, retries its store
    once, holds push actions behind a send-rate limit; its persona writer learns the
    segments it published and retries Redis once; its ops reporter fails to publish. The
    text is rendered exactly as the /metrics view in agents/monitoring.py renders it."""
    from intentstream.agents.monitoring import OpsReporter, WorkerProbe
    from intentstream.agents.personas import PersonaWriter
    from intentstream.agents.worker import Pipeline
    from intentstream.stream.contract.events import Event, parse_event
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.engine.partitioning import partition_for
    from intentstream.stream.ops.prometheus import render_prometheus
    from intentstream.stream.personas.merge import SegmentRecord
    from intentstream.stream.personas.records import learn_records
    from intentstream.stream.personas.service import PersonaService
    from intentstream.stream.settings import load_settings
    from intentstream.stream.state.memory import MemorySessionStore
    from intentstream.stream.state.memory.personas import MemoryPersonaStore
    from intentstream.stream.synth.clickstream import generate_lines
    from intentstream.stream.synth.config import GeneratorConfig

    settings = load_settings(env={
        "INTENTSTREAM_BREAKER__MAX_PER_MINUTE_PUSH": "1",  # holds push actions: intentstream_breaker_held
        "INTENTSTREAM_TRIGGERS__IDLE_PARTITION_S": "0",
        "INTENTSTREAM_OUTCOMES__MIN_PER_ARM": "2",  # a small trace: enough for intentstream_outcome_uplift
    })  # fmt: skip
    n = settings.topics.partitions
    store = MemorySessionStore()
    producer = _Acks()
    pipe = Pipeline(settings, store, lambda p: PartitionEngine(store, p, settings), producer)
    lines = list(generate_lines(GeneratorConfig(users=60, days=6, seed=7)))
    lines[100:100] = [b"not json", b"[1]", b'{"event_id":"x","user_id":"u-bad","ts":"yesterday","type":"click"}']
    offsets = [0] * n
    for start in range(0, len(lines), 400):
        batch: dict[int, list[tuple[int, bytes]]] = {}
        for raw in lines[start : start + 400]:
            ev = parse_event(raw)
            p = partition_for(ev.user_id.encode(), n) if type(ev) is Event else 0
            batch.setdefault(p, []).append((offsets[p], raw))
            offsets[p] += 1
        await pipe.handle(batch)
    await pipe.tick(set(range(n)))  # idle partitions adopt the watermark: timers fire
    await pipe.retrying("probe", _flaky_once())  # a Redis outage: store_retries

    writer = PersonaWriter(settings, owner="w-test")
    await writer._retrying("probe", _flaky_once())
    segments = [v for t, v in producer.sent if t == settings.topics.segments] + [b"{"]
    learn_records(
        PersonaService(settings.personas, MemoryPersonaStore()),
        [SegmentRecord(0, i, i, v) for i, v in enumerate(segments)], {}, writer.counters,
    )  # fmt: skip

    probe = WorkerProbe(
        settings, lambda: pipe, writer,
        assignment=lambda: range(n), highwater=lambda p: offsets[p] + 5,
    )  # fmt: skip
    reporter = OpsReporter(settings, "w-test", probe.snapshot, _Unreachable())
    await reporter.report()
    snap = await probe.snapshot()
    # the memory store has no ZCARD: count its due index as the Redis probe does
    snap = dataclasses.replace(snap, partitions={
        p: dataclasses.replace(st, timers=len(store.due_users(p, 2**62))) for p, st in snap.partitions.items()
    })  # fmt: skip
    return render_prometheus(snap, worker="w-test", alerts=reporter.rules.active, extra_counters=dict(reporter.counters))


def metric_families(text: str) -> dict[str, str]:
    """{metric name: type} of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


@pytest.fixture(scope="module")
def exposition() -> str:
    return asyncio.run(_worker_exposition())


@pytest.fixture(scope="module")
def exposed(exposition) -> set[str]:
    return set(metric_families(exposition))


def test_the_snapshot_exposes_every_documented_metric(exposition, exposed):
    from intentstream.stream.ops.prometheus import HELP

    assert set(HELP) <= exposed, sorted(set(HELP) - exposed)
    assert {"intentstream_worker_info", "intentstream_ops_send_failures_total", "intentstream_persona_store_retries_total"} <= exposed
    assert 'intentstream_breaker_held{channel="push",cause="rate"}' in exposition
    assert 'intentstream_alert_firing{alert="store_unavailable",subject=""} 1' in exposition
    # every arm of the strategy policy, paused on no partition of this small trace
    assert 'intentstream_roi_guard_paused{trigger="churn_risk",arm="winback_whats_new"} 0' in exposition


# --------------------------------------------------------------------------- PromQL metric names

_NOT_METRICS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small lexer, enough for these
    files: string literals, matchers, ranges, label lists and offsets are dropped; what
    remains that is not a function call or a keyword is a metric name)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.:])([A-Za-z_:][\w:]*)\s*(\()?", e):
        if m.group(2) is None and m.group(1).lower() not in _NOT_METRICS:
            names.add(m.group(1))
    return names


def test_promql_metric_names():
    assert promql_metric_names('sum by (job, instance) (rate(a_total{x="y", z=~"$v"}[$__rate_interval])) / ignoring(le) b') == {"a_total", "b"}
    assert promql_metric_names("c < 0.5 * c offset 1d and on (p) d > 0 unless e offset 10m or vector(0)") == {"c", "d", "e"}
    assert promql_metric_names("time() - max(f{bound=\"high\"}) by (trigger)") == {"f"}


# --------------------------------------------------------------------------- alerts.yml


def alert_rules() -> list[dict]:
    """The alerting rules of alerts.yml as {alert, expr, for, labels, annotations}: a
    reader for this file's layout (no YAML library is a dependency); promtool checks the
    real structure."""
    rules = []
    for chunk in re.split(r"(?m)^\s+- alert: ", ALERTS.read_text())[1:]:
        name, _, body = chunk.partition("\n")
        m = re.search(r"(?m)^(\s+)expr: (.*)$", body)
        assert m, name
        if m.group(2).strip() == "|":
            indent = len(m.group(1))
            expr_lines = []
            for line in body[m.end() + 1 :].splitlines():
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                expr_lines.append(line)
            expr = "\n".join(expr_lines)
        else:
            expr = m.group(2)
        fields = dict(re.findall(r"(?m)^\s+(for|severity|ops_alert|summary|description|runbook): ?(.*)$", body))
        rules.append({
            "alert": name.strip(), "expr": expr, "for": fields.get("for"),
            "labels": {k: fields[k] for k in ("severity", "ops_alert") if k in fields},
            "annotations": {k: fields[k] for k in ("summary", "description", "runbook") if k in fields},
        })  # fmt: skip
    return rules


def test_every_rule_has_for_severity_annotations_and_a_runbook():
    rules = alert_rules()
    assert len(rules) >= 10
    assert len({r["alert"] for r in rules}) == len(rules)
    for r in rules:
        assert re.fullmatch(r"\d+[smhd]", r["for"] or ""), r["alert"]
        assert r["labels"].get("severity") in ("warning", "critical"), r["alert"]
        assert set(r["annotations"]) == {"summary", "description", "runbook"}, r["alert"]


def test_every_ops_alert_code_has_a_rule_with_its_severity():
    from intentstream.stream.ops.alerts import ALERT_CODES, SEVERITY

    by_code = Counter(r["labels"].get("ops_alert") for r in alert_rules())
    assert {c: by_code[c] for c in ALERT_CODES} == {c: 1 for c in ALERT_CODES}
    for r in alert_rules():
        code = r["labels"].get("ops_alert")
        if code:
            assert r["labels"]["severity"] == SEVERITY[code], r["alert"]


def test_rules_use_only_metrics_the_worker_exposes(exposed):
    for r in alert_rules():
        names = promql_metric_names(r["expr"])
        assert names, r["alert"]
        # `up` is Prometheus's own series of the scrape
        assert names <= exposed | {"up"}, (r["alert"], sorted(names - exposed))


def test_prometheus_config_scrapes_the_workers_web_port():
    from intentstream.stream.settings import default_settings

    text = PROM_CONFIG.read_text()
    port = default_settings().worker.web_port
    assert re.search(rf"(?m)^\s+port: {port}$", text) and "metrics_path: /metrics" in text
    assert re.search(r"(?m)^\s+- job_name: intentstream$", text)
    assert 'up{job="intentstream"}' in ALERTS.read_text()  # IntentstreamWorkerDown selects that job
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f'"127.0.0.1:{port}:{port}"' in compose and "INTENTSTREAM_WORKER__WEB_BIND: 0.0.0.0" in compose
    for mount in ("./config/prometheus:/etc/prometheus", "./config/grafana/provisioning:/etc/grafana/provisioning",
                  "./config/grafana/dashboards:/etc/grafana/dashboards"):
        assert mount in compose
        assert (ROOT / mount.split(":")[0]).is_dir()


# --------------------------------------------------------------------------- Grafana


def _all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_all_panels(p.get("panels", [])))  # a collapsed row holds its panels
    return out


def test_grafana_dashboard(exposed):
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] and dash["title"]
    panels = _all_panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    # the provisioned data source is the variable's default
    provisioned = (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text()
    assert f"uid: {variables['DS_PROMETHEUS']['current']['value']}" in provisioned
    exprs: list[tuple[str, str]] = []
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${DS_PROMETHEUS}"
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"])
            assert m, v["definition"]
            exprs.append((f"variable {v['name']}", m.group(1)))
    used: set[str] = set()
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"])["uid"] == "${DS_PROMETHEUS}", p["title"]
            exprs.append((p["title"], t["expr"]))
    for where, expr in exprs:
        names = promql_metric_names(expr)
        assert names, (where, expr)
        assert names <= exposed, (where, sorted(names - exposed))
        used |= names
    # the panels the dashboard is for
    for wanted in ("intentstream_events_total", "intentstream_partition_lag", "intentstream_partition_watermark_seconds",
                   "intentstream_decisions_total", "intentstream_invalid_total", "intentstream_store_retries_total",
                   "intentstream_outcome_conversion_rate", "intentstream_outcome_uplift", "intentstream_outcomes_total",
                   "intentstream_breaker_open", "intentstream_breaker_held", "intentstream_alert_firing",
                   "intentstream_roi_guard_paused"):  # fmt: skip
        assert wanted in used, wanted
    # panels do not overlap on Grafana's 24-column grid (a collapsed row's panels aside)
    cells = Counter((x, y) for p in dash["panels"] for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
                    for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"]))  # fmt: skip
    assert max(cells.values()) == 1 and all(x < 24 for x, _ in cells)
    decisions = [e for _, e in exprs if "intentstream_decisions_total" in e]
    assert any(re.search(r"by \(trigger, status\)", e) for e in decisions)


def test_grafana_provisioning_points_at_the_dashboard_mount():
    text = (GRAFANA_PROVISIONING / "dashboards" / "intentstream.yml").read_text()
    assert "path: /etc/grafana/dashboards" in text and "type: file" in text
    ds = (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text()
    assert "url: http://prometheus:9090" in ds and "type: prometheus" in ds


# --------------------------------------------------------------------------- live: Prometheus scrapes a worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def wait_until(what: str, check, timeout: float, procs: dict[str, subprocess.Popen], logs: dict[str, Path]):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited {proc.returncode} while waiting for {what}:\n{logs[name].read_text()[-3000:]}")
        try:
            last = check()
            if last:
                return last
        except (OSError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    tails = "\n".join(f"--- {n}:\n{p.read_text()[-2000:]}" for n, p in logs.items())
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{tails}")


@pytest.mark.integration
def test_prometheus_scrapes_a_worker_and_fires_the_dead_letter_rule(stack, prom_bins, kafka_admin, exposed, tmp_path):
    """`intentstream worker` on the stack; Debian's prometheus scrapes its /metrics every
    second with the rules of alerts.yml (every `for:` cut to 1 s); invalid lines fed to
    the clickstream raise intentstream_invalid_total until IntentstreamDeadLetterRateHigh
    fires. Checked through Prometheus's HTTP API."""
    from kafka import KafkaProducer

    t0 = time.monotonic()
    run = uuid.uuid4().hex[:10]
    web_port, prom_port = free_port(), free_port()
    env = {
        **os.environ,
        "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "INTENTSTREAM_REDIS__URL": stack.redis_url,
        "INTENTSTREAM_REDIS__KEY_PREFIX": f"obs{run}",
        "INTENTSTREAM_WORKER__APP_ID": f"obs-{run}",
        "INTENTSTREAM_WORKER__WEB_PORT": str(web_port),
        "INTENTSTREAM_WORKER__WEB_BIND": "127.0.0.1",
        "INTENTSTREAM_WORKER__DATA_DIR": str(tmp_path / "faust-data"),
        "INTENTSTREAM_PERSONA_WRITER__IN_WORKER": "false",
        "INTENTSTREAM_OPS__METRICS_INTERVAL_S": "1",
    }
    topics = {
        name: f"obs.{run}.{name}"
        for name in ("clickstream", "dead_letter", "segments", "audit", "outcomes", "metrics", "alerts")
    }
    for name, topic in topics.items():
        env[f"INTENTSTREAM_TOPICS__{name.upper()}"] = topic
    env["INTENTSTREAM_TOPICS__ACTIONS_PREFIX"] = f"obs.{run}.actions."

    rules = re.sub(r"(?m)^(\s+for: )\S+", r"\g<1>1s", ALERTS.read_text())
    assert rules != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: intentstream\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{web_port}']}}]\n"
    )
    check = promtool(prom_bins, "check", "config", str(tmp_path / "prometheus.yml"))
    assert check.returncode == 0, check.stdout + check.stderr

    procs: dict[str, subprocess.Popen] = {}
    logs = {"worker": tmp_path / "worker.log", "prometheus": tmp_path / "prometheus.log"}
    producer = None
    try:
        subprocess.run(
            [sys.executable, "-m", "intentstream.stream.cli", "topics"], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        with open(logs["worker"], "w") as out:
            procs["worker"] = subprocess.Popen(
                [sys.executable, "-m", "intentstream.stream.cli", "worker", "--loglevel", "warning"],
                env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        with open(logs["prometheus"], "w") as out:
            procs["prometheus"] = subprocess.Popen(
                [prom_bins["prometheus"], f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                 "--log.level=warn"],
                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def target_up():
            active = api(prom_port, "/api/v1/targets")["activeTargets"]
            return [t for t in active if t["health"] == "up" and t["scrapeUrl"] == f"http://127.0.0.1:{web_port}/metrics"]

        (target,) = wait_until("the worker's target to be up", target_up, 40, procs, logs)
        assert target["labels"]["job"] == "intentstream"

        def worker_info():
            return api(prom_port, "/api/v1/query", query="intentstream_worker_info")["result"]

        (info,) = wait_until("intentstream_worker_info in Prometheus", worker_info, 20, procs, logs)
        assert info["metric"]["instance"] == f"127.0.0.1:{web_port}" and info["metric"]["worker"]

        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=5)
        sent = [0]

        def dlq_alert_firing():
            for i in range(40):  # invalid input, steadily: the rate over the window rises
                producer.send(topics["clickstream"], key=f"u{i}".encode(), value=b"not json %d" % sent[0])
                sent[0] += 1
            producer.flush()
            alerts = api(prom_port, "/api/v1/alerts")["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "IntentstreamDeadLetterRateHigh" and a["state"] == "firing"]

        (alert,) = wait_until("IntentstreamDeadLetterRateHigh to fire", dlq_alert_firing, 45, procs, logs)
        assert alert["labels"]["ops_alert"] == "dlq_rate" and alert["labels"]["severity"] == "warning"
        assert alert["labels"]["instance"] == f"127.0.0.1:{web_port}"
        assert float(alert["value"]) > 0.05 and "dead-letter" in alert["annotations"]["summary"]

        result = api(prom_port, "/api/v1/query", query='sum(intentstream_invalid_total{reason="not_json"})')["result"]
        assert 0 < float(result[0]["value"][1]) <= sent[0]
        # everything the live worker exposes is in what the dashboard and rules were checked against
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as resp:
            live = set(metric_families(resp.read().decode()))
        assert live and live <= exposed, sorted(live - exposed)
        assert time.monotonic() - t0 < 90
    finally:
        if producer is not None:
            producer.close(timeout=5)
        for proc in procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(list(topics.values()), timeout_ms=10000)


def test_rule_thresholds_are_the_ops_defaults():
    """The Prometheus rules copy the worker's own alert thresholds (``[ops]`` in
    config/default.toml, one definition): a changed default without the rule fails here."""
    from intentstream.stream.settings import default_settings

    ops = default_settings().ops
    text = (ROOT / "config" / "prometheus" / "alerts.yml").read_text()
    blocks = {}
    for block in text.split("- alert: ")[1:]:
        code = re.search(r"ops_alert: (\w+)", block)
        if code:
            blocks[code.group(1)] = block.split("for:")[0]  # the comment and the expression

    def num(x: float) -> str:
        return f"{x:g}"

    expected = {
        "dlq_rate": [f"> {num(ops.dlq_rate_alert)}", f">= {num(ops.dlq_min_volume)}"],
        "decision_volume_jump": [f"> {num(ops.volume_jump_factor)} *", f">= {num(ops.volume_min_count)}"],
        "late_share_spike": [f"> {num(ops.late_share_alert)}", f">= {num(ops.late_share_min_events)}"],
    }
    for code, needles in expected.items():
        for needle in needles:
            assert needle in blocks[code], (code, needle)


def test_a_partition_without_input_since_a_restart_still_adopts_the_watermark():
    """The worker restarted after all of partition 0's input was consumed: no event reaches
    it again, yet after [triggers] idle_partition_s it must adopt the other partitions'
    watermark, so its open session closes (it used to wait for input that never came)."""
    import time as _time

    from intentstream.agents.worker import Pipeline
    from intentstream.stream.engine.partition import PartitionEngine
    from intentstream.stream.settings import load_settings
    from intentstream.stream.state.memory import MemorySessionStore

    settings = load_settings(env={"INTENTSTREAM_TRIGGERS__IDLE_PARTITION_S": "0.05"})
    store = MemorySessionStore()

    def ev(i: int, user: str, minute: int) -> bytes:
        return b'{"event_id":"e%d","user_id":"%s","ts":"2026-01-05T%02d:%02d:00Z","type":"page_view"}' % (i, user.encode(), 10 + minute // 60, minute % 60)

    async def run() -> list[bytes]:
        before = Pipeline(settings, store, lambda p: PartitionEngine(store, p, settings), _Acks())
        await before.handle({0: [(0, ev(0, "quiet", 0))]})  # partition 0's last input: a session stays open
        producer = _Acks()
        after = Pipeline(settings, store, lambda p: PartitionEngine(store, p, settings), producer)  # the restart
        # partition 1 moves 5 hours on (two users: the watermark follows the 2nd most advanced)
        await after.handle({1: [(i, ev(i + 1, f"busy{i % 2}", 5 * i)) for i in range(60)]})
        await after.tick({0, 1})
        _time.sleep(0.1)
        await after.tick({0, 1})
        return [v for t, v in producer.sent if t == settings.topics.segments]

    segments = asyncio.run(run())
    assert any(b'"user_id":"quiet"' in v for v in segments)
