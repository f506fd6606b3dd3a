"""One typed settings object, loaded from ``config/default.toml``, an optional override
file, and environment variables — in that order, later wins.

Every knob is documented once, in ``config/default.toml``. An environment variable
``INTENTSTREAM_<SECTION>__<KEY>`` overrides ``[section] key`` (for example
``INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS=broker:9092``); its text is converted to the
field's type (ints, floats, booleans, comma-separated lists). Secrets (passwords, TLS
keys) should come from the environment only, never from files under version control.

>>> s = load_settings(env={"INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": "k1:9092"})
>>> s.kafka.bootstrap_servers
'k1:9092'
>>> s.sessions.inactivity_gap_s
1800
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "INTENTSTREAM_"
CONFIG_DIR = Path(os.environ.get("INTENTSTREAM_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))
DEFAULT_FILE = CONFIG_DIR / "default.toml"


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    client_id: str = "intentstream"

    # the clients' connection options are built from these in intentstream.agents.kafka

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, security_protocol={self.security_protocol!r})"


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:16379/0"
    password: str = ""
    key_prefix: str = "is"
    socket_timeout_s: float = 5.0

    def __repr__(self) -> str:
        return f"RedisSettings(url={self.url.split('@')[-1]!r}, key_prefix={self.key_prefix!r})"


@dataclass(frozen=True)
class TopicSettings:
    clickstream: str = "clickstream"
    dead_letter: str = "clickstream.dlq"
    segments: str = "segments"
    actions_prefix: str = "actions."
    audit: str = "actions.audit"
    metrics: str = "ops.metrics"
    alerts: str = "ops.alerts"
    partitions: int = 6
    replication_factor: int = 1


@dataclass(frozen=True)
class EventSettings:
    default_tz: str = "UTC"


@dataclass(frozen=True)
class SessionSettings:
    inactivity_gap_s: int = 1800
    max_session_s: int = 14400
    allowed_lateness_s: int = 300
    dedup_ttl_s: int = 86400
    dedup_max_ids: int = 32
    intent_switch_votes: int = 3
    strength_full_weight: int = 10
    urgency_high_strength: float = 0.6
    urgency_medium_strength: float = 0.8
    lifecycle_growth_after_days: int = 90
    lifecycle_maturity_after_days: int = 365
    lifecycle_decline_after_days: int = 90
    user_ttl_days: int = 120
    batch_size: int = 500
    engine_cache_users: int = 5000


@dataclass(frozen=True)
class TriggerSettings:
    enabled: tuple[str, ...] = (
        "cart_abandoned", "payment_stalled", "kyc_stalled", "kyc_rejected",
        "churn_risk", "first_transaction_nudge", "coupon_interest",
    )  # fmt: skip
    cart_abandon_s: int = 1800
    payment_stall_s: int = 900
    kyc_stall_s: int = 86400
    churn_silence_s: int = 604800
    churn_min_active_days: int = 2
    churn_lookback_days: int = 30
    nudge_min_strength: float = 0.6
    coupon_min_strength: float = 0.5
    feedback_ignore_s: int = 86400
    dismiss_streak_block: int = 3
    dismiss_block_s: int = 2592000
    idle_partition_s: float = 10.0


@dataclass(frozen=True)
class WorkerSettings:
    app_id: str = "intentstream"
    web_enabled: bool = True
    web_bind: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: str = ""
    log_level: str = "info"
    batch_size: int = 500
    batch_within_s: float = 0.1
    commit_interval_s: float = 1.0
    session_timeout_s: float = 10.0
    idle_tick_s: float = 1.0
    redis_retry_max_s: float = 30.0


@dataclass(frozen=True)
class FatigueSettings:
    window_s: int = 7 * 86400
    channel_cap: int = 3
    coupon_cap: int = 1
    cooldown_s: int = 86400
    quiet_start: str = "22:00"
    quiet_end: str = "08:00"
    quiet_channels: tuple[str, ...] = ("push", "sms")
    holdout_share: float = 0.05
    holdout_experiment: str = "fatigue-holdout-v1"
    retention_slack_s: int = 86400


@dataclass(frozen=True)
class StrategySettings:
    catalogue: str = ""
    regret_streak: int = 5


@dataclass(frozen=True)
class PersonaSettings:
    estimator: str = "kmeans"
    n_clusters: int = 12
    seed: int = 42
    categorical_weight: float = 2.0
    assignment: str = "distinctive"
    kmeans_halflife: float = 0.1
    dbstream_clustering_threshold: float = 3.0
    dbstream_fading_factor: float = 0.01
    dbstream_cleanup_interval: float = 2.0
    dbstream_intersection_factor: float = 0.3
    dbstream_minimum_weight: float = 1.0
    clustream_max_micro_clusters: int = 100
    clustream_time_gap: int = 100
    streamkmeans_chunk_size: int = 100
    user_votes_window: int = 20
    unique_users_exact_cap: int = 10000
    timeline_bucket_s: int = 86400
    timeline_max_buckets: int = 90
    checkpoint_every_segments: int = 1000
    checkpoint_every_s: int = 60
    report_min_users: int = 5
    report_min_user_share: float = 0.01
    playbook: str = ""
    playbook_min_share: float = 0.3
    playbook_max_entries: int = 3


@dataclass(frozen=True)
class PersonaWriterSettings:
    in_worker: bool = True
    lease_ttl_s: float = 15.0
    lease_renew_s: float = 5.0
    acquire_interval_s: float = 1.0
    merge_grace_s: float = 2.0
    max_batch: int = 2000
    partition_refresh_s: float = 60.0
    retry_max_s: float = 30.0
    stop_timeout_s: float = 20.0


@dataclass(frozen=True)
class OpsSettings:
    worker_id: str = ""
    metrics_interval_s: float = 10.0
    dlq_rate_alert: float = 0.05
    dlq_min_volume: int = 100
    lag_growth_intervals: int = 3
    watermark_stall_intervals: int = 2
    volume_jump_factor: float = 5.0
    volume_window_intervals: int = 6
    volume_min_count: int = 20
    alert_cooldown_s: float = 300.0
    probe_timeout_s: float = 2.0


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    events: EventSettings = field(default_factory=EventSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    triggers: TriggerSettings = field(default_factory=TriggerSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    fatigue: FatigueSettings = field(default_factory=FatigueSettings)
    strategies: StrategySettings = field(default_factory=StrategySettings)
    personas: PersonaSettings = field(default_factory=PersonaSettings)
    persona_writer: PersonaWriterSettings = field(default_factory=PersonaWriterSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)


class SettingsError(ValueError):
    """A config file or environment variable names an unknown knob or has a bad value."""


@functools.cache
def default_settings() -> Settings:
    """The defaults alone (``config/default.toml``, no override file, no environment):
    what domain objects built without explicit settings use, so that every default has
    exactly one home, the TOML file."""
    return load_settings(env={})


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    base: str | Path = DEFAULT_FILE,
) -> Settings:
    """Defaults file, then ``path`` (or ``$INTENTSTREAM_CONFIG``), then the environment."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if Path(base).exists():
        _merge(data, _read_toml(base))
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        _merge(data, _read_toml(path))
    for key, text in env.items():
        if key.startswith(ENV_PREFIX) and "__" in key:
            section, _, name = key[len(ENV_PREFIX) :].lower().partition("__")
            data.setdefault(section, {})[name] = text
    return _build(Settings, data, "")


def _read_toml(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise SettingsError(f"unknown setting(s) {sorted(unknown)} in [{where or 'root'}]")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        label = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise SettingsError(f"[{label}] must be a table")
            kwargs[name] = _build(hint, value, label)
        else:
            kwargs[name] = _coerce(hint, value, label)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, label: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[...] and X | Y
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value == "" and len(args) < len(typing.get_args(hint))):
            return None
        return _coerce(args[0], value, label)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (str,)
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        out = [_coerce(item, v, label) for v in items]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{label}: expected a table")
        return dict(value)
    try:
        if hint is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return lowered in ("1", "true", "yes", "on")
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{label}: cannot read {value!r} as {getattr(hint, '__name__', hint)}") from exc
