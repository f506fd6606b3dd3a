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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Self

ENV_PREFIX = "INTENTSTREAM_"
CONFIG_DIR = Path(os.environ.get("INTENTSTREAM_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config"))
DEFAULT_FILE = CONFIG_DIR / "default.toml"


class SettingsSection:
    """Base of the settings dataclasses. Their fields declare types only: every value,
    defaults included, comes from ``config/default.toml`` (then the override file and the
    environment; see :func:`load_settings`)."""

    @classmethod
    def defaults(cls, **overrides: Any) -> Self:
        """This class's part of :func:`default_settings`, with ``overrides`` replaced: the
        short way for tests and doctests to get settings without repeating a default.

        >>> PersonaSettings.defaults(n_clusters=4).n_clusters, PersonaSettings.defaults().seed
        (4, 42)
        >>> Settings.defaults(ops=OpsSettings.defaults(worker_id="w1")).ops.worker_id
        'w1'
        """
        root = default_settings()
        parts = [root, *(getattr(root, f.name) for f in dataclasses.fields(root))]
        part: Any = next(p for p in parts if type(p) is cls)  # the section dataclass of this class
        return dataclasses.replace(part, **overrides)


@dataclass(frozen=True)
class KafkaSettings(SettingsSection):
    bootstrap_servers: str
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: str
    ssl_cafile: str
    ssl_certfile: str
    ssl_keyfile: str
    client_id: str

    # the clients' connection options are built from these in intentstream.agents.kafka

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, security_protocol={self.security_protocol!r})"


@dataclass(frozen=True)
class RedisSettings(SettingsSection):
    url: str
    password: str
    key_prefix: str
    socket_timeout_s: float
    wait_replicas: int
    wait_timeout_ms: int

    @property
    def cluster(self) -> bool:
        """Whether ``url`` names a node of a Redis Cluster (``redis+cluster://``,
        ``rediss+cluster://``) rather than a standalone Redis.

        >>> RedisSettings.defaults(url="redis+cluster://127.0.0.1:17000").cluster
        True
        """
        return cluster_url(self.url) is not None

    def __repr__(self) -> str:
        return f"RedisSettings(url={self.url.split('@')[-1]!r}, key_prefix={self.key_prefix!r})"


def cluster_url(url: str) -> str | None:
    """The plain ``redis://``/``rediss://`` URL of a cluster URL, None for any other.

    >>> cluster_url("rediss+cluster://:pw@node1:7000"), cluster_url("redis://h:6379/0")
    ('rediss://:pw@node1:7000', None)
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("redis+cluster", "rediss+cluster"):
        return f"{scheme.lower().split('+')[0]}://{rest}"
    return None


@dataclass(frozen=True)
class TopicSettings(SettingsSection):
    clickstream: str
    dead_letter: str
    segments: str
    actions_prefix: str
    audit: str
    outcomes: str
    metrics: str
    alerts: str
    partitions: int
    replication_factor: int


@dataclass(frozen=True)
class EventSettings(SettingsSection):
    default_tz: str
    input_format: str
    max_late_share: float
    late_share_min_events: int
    watermark_quorum: int
    max_future_s: int


@dataclass(frozen=True)
class SessionSettings(SettingsSection):
    inactivity_gap_s: int
    max_session_s: int
    allowed_lateness_s: int
    dedup_ttl_s: int
    dedup_max_ids: int
    intent_switch_votes: int
    strength_full_weight: int
    urgency_high_strength: float
    urgency_medium_strength: float
    lifecycle_growth_after_days: int
    lifecycle_maturity_after_days: int
    lifecycle_decline_after_days: int
    user_ttl_days: int
    batch_size: int
    engine_cache_users: int
    offline_jobs: int
    offline_parallel_after_events: int


@dataclass(frozen=True)
class TriggerSettings(SettingsSection):
    enabled: tuple[str, ...]
    cart_abandon_s: int
    payment_stall_s: int
    kyc_stall_s: int
    churn_steps_s: tuple[int, ...]
    churn_rhythm_factor: float
    churn_rhythm_min_days: int
    churn_min_active_days: int
    churn_lookback_days: int
    nudge_min_strength: float
    coupon_min_strength: float
    feedback_ignore_s: int
    dismiss_streak_block: int
    dismiss_block_s: int
    idle_partition_s: float
    late_timer_grace_s: int
    correction_window_s: int
    goals: dict[str, list[str]]

    @property
    def churn_silence_s(self) -> int:
        """The silence before the first churn reminder (``churn_steps_s[0]``): what the
        synthetic ground truth and the simulator's world checks call churn."""
        return self.churn_steps_s[0]


@dataclass(frozen=True)
class WorkerSettings(SettingsSection):
    app_id: str
    web_enabled: bool
    web_bind: str
    web_port: int
    data_dir: str
    log_level: str
    batch_size: int
    batch_within_s: float
    commit_interval_s: float
    session_timeout_s: float
    idle_tick_s: float
    redis_retry_max_s: float


@dataclass(frozen=True)
class FatigueSettings(SettingsSection):
    window_s: int
    channel_cap: int
    coupon_cap: int
    cooldown_s: int
    global_caps: tuple[tuple[int, int], ...]
    trigger_priority: tuple[str, ...]
    quiet_start: str
    quiet_end: str
    quiet_channels: tuple[str, ...]
    holdout_share: float
    holdout_experiment: str
    holdout_shares: dict[str, float]
    retention_slack_s: int


@dataclass(frozen=True)
class OutcomeSettings(SettingsSection):
    window_s: int
    windows_s: dict[str, int]
    close_grace_s: int
    goals: dict[str, list[str]]
    first_goal_only: tuple[str, ...]
    min_per_arm: int
    confidence: float
    metrics_window: int


@dataclass(frozen=True)
class SendTimeSettings(SettingsSection):
    triggers: tuple[str, ...]
    max_delay_s: int
    min_seen: int


@dataclass(frozen=True)
class PolicySettings(SettingsSection):
    enabled: bool
    explore_share: float
    min_exploit_sends: int
    persona_prior_sends: int
    epoch_s: int
    roi_min_conversion: float
    roi_min_sends: int
    retest_share: float


@dataclass(frozen=True)
class StrategySettings(SettingsSection):
    catalogue: str
    regret_streak: int


@dataclass(frozen=True)
class PersonaSettings(SettingsSection):
    estimator: str
    n_clusters: int
    seed: int
    categorical_weight: float
    assignment: str
    kmeans_halflife: float
    dbstream_clustering_threshold: float
    dbstream_fading_factor: float
    dbstream_cleanup_interval: float
    dbstream_intersection_factor: float
    dbstream_minimum_weight: float
    clustream_max_micro_clusters: int
    clustream_time_gap: int
    streamkmeans_chunk_size: int
    user_votes_window: int
    unique_users_exact_cap: int
    timeline_bucket_s: int
    timeline_max_buckets: int
    checkpoint_every_segments: int
    checkpoint_every_s: int
    report_min_users: int
    report_min_user_share: float
    playbook: str
    playbook_min_share: float
    playbook_max_entries: int


@dataclass(frozen=True)
class ReportSettings(SettingsSection):
    domain: str
    journey_min_segments: int


@dataclass(frozen=True)
class PersonaWriterSettings(SettingsSection):
    in_worker: bool
    lease_ttl_s: float
    lease_renew_s: float
    acquire_interval_s: float
    merge_grace_s: float
    max_batch: int
    partition_refresh_s: float
    retry_max_s: float
    stop_timeout_s: float


@dataclass(frozen=True)
class OpsSettings(SettingsSection):
    worker_id: str
    metrics_interval_s: float
    dlq_rate_alert: float
    dlq_min_volume: int
    lag_growth_intervals: int
    watermark_stall_intervals: int
    volume_jump_factor: float
    volume_window_intervals: int
    volume_min_count: int
    alert_cooldown_s: float
    probe_timeout_s: float
    late_share_alert: float
    late_share_min_events: int


@dataclass(frozen=True)
class BreakerSettings(SettingsSection):
    max_per_minute_push: int
    max_per_minute_sms: int
    max_per_minute_email: int
    max_per_minute_in_app: int
    max_per_minute_coupon: int
    burst_s: float
    interval_s: float
    storm_max_sends: int
    storm_max_decisions: int
    storm_jump_factor: float
    storm_baseline_intervals: int
    storm_min_sends: int
    storm_late_share: float
    storm_late_min_events: int
    auto_release_after_s: float

    def max_per_minute(self, channel: str) -> int:
        """The send-rate limit of ``actions.<channel>`` (0: unlimited; unknown channel: 0)."""
        return int(getattr(self, f"max_per_minute_{channel}", 0) or 0)


@dataclass(frozen=True)
class Settings(SettingsSection):
    kafka: KafkaSettings
    redis: RedisSettings
    topics: TopicSettings
    events: EventSettings
    sessions: SessionSettings
    triggers: TriggerSettings
    worker: WorkerSettings
    fatigue: FatigueSettings
    outcomes: OutcomeSettings
    send_time: SendTimeSettings
    policy: PolicySettings
    strategies: StrategySettings
    personas: PersonaSettings
    report: ReportSettings
    persona_writer: PersonaWriterSettings
    ops: OpsSettings
    breaker: BreakerSettings


class SettingsError(ValueError):
    """A config file or environment variable names an unknown knob or has a bad value, or
    the defaults file lacks a knob."""


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
    """Defaults file, then ``path`` (or ``$INTENTSTREAM_CONFIG``), then the environment.

    The defaults file must define every knob (the dataclasses have no defaults of their
    own); one it lacks is a :class:`SettingsError` naming it.
    """
    env = os.environ if env is None else env
    if not Path(base).is_file():
        raise SettingsError(f"defaults file {base} not found")
    data: dict[str, Any] = {}
    _merge(data, _read_toml(base))
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        _merge(data, _read_toml(path))
    for key, text in env.items():
        if key.startswith(ENV_PREFIX) and "__" in key:
            section, _, name = key[len(ENV_PREFIX) :].lower().partition("__")
            data.setdefault(section, {})[name] = text
    return _build(Settings, data, "", base)


def overlay(settings: Settings, data: Mapping[str, Any] | str | Path, where: str | Path = "overrides") -> Settings:
    """``settings`` with ``data`` (a table, or a TOML file's path) laid over it, merged and
    validated exactly as :func:`load_settings` merges its files (tables key by key; an
    unknown key is a :class:`SettingsError`). ``where`` names the source in errors.

    >>> overlay(default_settings(), {"fatigue": {"channel_cap": 1}}).fatigue.channel_cap
    1
    """
    if not isinstance(data, Mapping):
        where, data = data, _read_toml(data)
    merged = dataclasses.asdict(settings)
    _merge(merged, data)
    return _build(Settings, merged, "", where)


def _read_toml(path: str | Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _build(cls: type, data: Mapping[str, Any], where: str, base: str | Path) -> Any:
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = set(data) - set(known)
    if unknown:
        raise SettingsError(f"unknown setting(s) {sorted(unknown)} in [{where or 'root'}]")
    missing = [name for name in known if name not in data]
    if missing:
        what = f"table(s) {', '.join(f'[{m}]' for m in missing)}" if not where else f"[{where}] {', '.join(missing)}"
        raise SettingsError(f"missing setting {what}: {base} must define every knob")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        label = f"{where}.{name}" if where else name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise SettingsError(f"[{label}] must be a table")
            kwargs[name] = _build(hint, value, label, base)
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
