"""Every Kafka connection the product opens is configured here, from ``[kafka]``.

* :func:`kafka_python_options` — bootstrap servers, client id, SASL and TLS files for
  kafka-python clients (the outbox recovery's reader gets them from the worker);
  :func:`make_producer`, :func:`make_consumer` and :func:`admin_client` create the
  clients the operator commands, the topic admin, the benchmarks and the tests use.
* :func:`aiokafka_options` — the same connection for the aiokafka clients the worker runs
  beside Faust (outbox producer, persona writer's consumer, ops producer), with TLS as an
  :func:`ssl_context`; :func:`faust_broker_url` and :func:`broker_credentials` — the same
  for the Faust app.

The client libraries are imported only when a client or Faust credentials are made, so
``intentstream --help`` and the offline commands never load them.

>>> from intentstream.stream.settings import load_settings
>>> s = load_settings(env={"INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
>>> kafka_python_options(s.kafka)["bootstrap_servers"], kafka_python_options(s.kafka)["client_id"]
(['k1:9092', 'k2:9092'], 'intentstream')
>>> aiokafka_options(s, "outbox")["client_id"], faust_broker_url(s.kafka)
('intentstream-outbox', 'kafka://k1:9092;k2:9092')
"""

from __future__ import annotations

import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Any

from intentstream.stream.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

# --------------------------------------------------------------------------- kafka-python


def kafka_python_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options for kafka-python clients (producer, consumer, admin)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),  # kafka-python strips each entry itself
        "security_protocol": kafka.security_protocol,
        "client_id": kafka.client_id,
    }
    if kafka.sasl_mechanism:
        opts.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(kafka, name):
            opts[name] = getattr(kafka, name)
    return opts


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """An idempotent ``acks=all`` kafka-python producer from the settings (raw bytes)."""
    from kafka import KafkaProducer

    opts = kafka_python_options(settings.kafka)
    opts.update(
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,  # <= 5 keeps per-partition order with idempotence
        allow_auto_create_topics=False,
        linger_ms=20,
        batch_size=256 * 1024,
    )
    opts.update(overrides)
    return KafkaProducer(**opts)


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A group-less consumer (``group_id=None``, no commits): reading never disturbs the workers."""
    from kafka import KafkaConsumer

    opts = kafka_python_options(settings.kafka)
    opts.update(
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    opts.update(overrides)
    return KafkaConsumer(**opts)


class KafkaAccessError(Exception):
    """The brokers refused this user: wrong credentials, or an operation its ACLs do not
    allow. One line for the operator; it never holds a password."""


def admin_client(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """A kafka-python admin client from the settings' connection options.

    Raises :class:`KafkaAccessError` as soon as the brokers refuse the SASL credentials:
    kafka-python would retry them until its bootstrap timeout and then report only that
    timeout, so it bootstraps in short rounds and stops at a refusal (seen in its log).
    """
    import logging

    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError

    opts = kafka_python_options(settings.kafka)
    opts.setdefault("request_timeout_ms", 30000)
    opts.update(overrides)
    total_s = opts.pop("bootstrap_timeout_ms", 30000) / 1000
    refused: list[BaseException] = []
    made: list[Any] = []

    def seen(record: logging.LogRecord) -> bool:  # "Bootstrap connection to ... failed: <exc>"
        args = record.args if isinstance(record.args, tuple) else ()
        refused.extend(a for a in args if isinstance(a, SaslAuthenticationFailedError))
        return True

    def client(**kwargs: Any) -> Any:  # a handle on it, to close it after a failed round
        made.append(KafkaAdminClient.DEFAULT_CONFIG["kafka_client"](**kwargs))
        return made[-1]

    watched = logging.getLogger("kafka.net.manager")
    watched.addFilter(seen)
    deadline = time.monotonic() + total_s
    try:
        while True:
            round_s = min(5.0, max(0.5, deadline - time.monotonic()))
            try:
                return KafkaAdminClient(**opts, kafka_client=client, bootstrap_timeout_ms=int(round_s * 1000))
            except KafkaTimeoutError:
                for c in made:
                    with contextlib.suppress(Exception):
                        c.close()
                made.clear()
                if refused:
                    raise access_error(settings.kafka, refused[0]) from None
                if time.monotonic() >= deadline:
                    raise
    finally:
        watched.removeFilter(seen)


def access_error(kafka: KafkaSettings, exc: BaseException) -> KafkaAccessError:
    """The one-line error for an authentication or authorization failure of this user
    (the broker's own message names the mechanism, never the password).

    >>> from intentstream.stream.settings import KafkaSettings
    >>> k = KafkaSettings.defaults(sasl_mechanism="SCRAM-SHA-512", sasl_username="w", sasl_password="s3cret")
    >>> str(access_error(k, Exception("SaslAuthenticationFailedError: Authentication failed: invalid credentials")))
    "Kafka at 127.0.0.1:19092 refused user 'w' (SCRAM-SHA-512): SaslAuthenticationFailedError: Authentication failed: invalid credentials; check [kafka] sasl_username and INTENTSTREAM_KAFKA__SASL_PASSWORD"
    """
    detail = " ".join(str(exc).split())
    if kafka.sasl_password:
        detail = detail.replace(kafka.sasl_password, "***")
    user = kafka.sasl_username or "(anonymous)"
    return KafkaAccessError(
        f"Kafka at {kafka.bootstrap_servers} refused user {user!r} ({kafka.sasl_mechanism or kafka.security_protocol}): "
        f"{detail}; check [kafka] sasl_username and INTENTSTREAM_KAFKA__SASL_PASSWORD"
    )


# --------------------------------------------------------------------------- aiokafka and Faust


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL, or None."""
    if kafka.security_protocol.upper() not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile or None)
    return context


def _servers(kafka: KafkaSettings) -> list[str]:
    return [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()]


def aiokafka_options(settings: Settings, client: str) -> dict[str, Any]:
    """Connection options (SASL/TLS as Faust's) for the aiokafka clients the worker runs
    beside Faust: the outbox producer, the persona writer's consumer, the ops producer."""
    k = settings.kafka
    opts: dict[str, Any] = {
        "bootstrap_servers": _servers(k),
        "security_protocol": k.security_protocol,
        "client_id": f"{settings.worker.app_id}-{client}",
    }
    context = ssl_context(k)
    if context is not None:
        opts["ssl_context"] = context
    if k.sasl_mechanism:
        opts.update(sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username, sasl_plain_password=k.sasl_password)
    return opts


def faust_broker_url(kafka: KafkaSettings) -> str:
    """The Faust ``broker`` URL: ``kafka://host1:port;host2:port``."""
    return "kafka://" + ";".join(_servers(kafka))


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust credentials for SASL and/or TLS, or None for PLAINTEXT."""
    import faust

    protocol = kafka.security_protocol.upper()
    context = ssl_context(kafka)
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
