"""intentstream.agents.kafka: the one place Kafka connection options are built — for
kafka-python clients, aiokafka clients and the Faust app — and the kafka-python clients
made from them. No broker needed: the client classes are replaced by recorders."""

from __future__ import annotations

import ssl

import faust
import pytest

from intentstream.agents import kafka as k
from intentstream.stream.settings import load_settings

SASL_SSL = {
    "INTENTSTREAM_KAFKA__BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
    "INTENTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "INTENTSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "INTENTSTREAM_KAFKA__SASL_USERNAME": "svc",
    "INTENTSTREAM_KAFKA__SASL_PASSWORD": "hunter2",
}


def test_plaintext_options_for_every_client_kind():
    s = load_settings(env={})
    assert k.kafka_python_options(s.kafka) == {
        "bootstrap_servers": ["127.0.0.1:19092"], "security_protocol": "PLAINTEXT", "client_id": "intentstream",
    }  # fmt: skip
    assert k.aiokafka_options(s, "outbox") == {
        "bootstrap_servers": ["127.0.0.1:19092"], "security_protocol": "PLAINTEXT", "client_id": "intentstream-outbox",
    }  # fmt: skip
    assert k.faust_broker_url(s.kafka) == "kafka://127.0.0.1:19092"
    assert k.ssl_context(s.kafka) is None and k.broker_credentials(s.kafka) is None


def test_sasl_over_tls_options_for_every_client_kind():
    s = load_settings(env={**SASL_SSL, "INTENTSTREAM_KAFKA__SSL_CAFILE": "/etc/ca.pem"})
    sasl = {"sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "svc", "sasl_plain_password": "hunter2"}
    # kafka-python: the TLS files by name
    assert k.kafka_python_options(s.kafka) == {
        "bootstrap_servers": ["b1:9093", "b2:9093"], "security_protocol": "SASL_SSL", "client_id": "intentstream",
        **sasl, "ssl_cafile": "/etc/ca.pem",
    }  # fmt: skip
    # aiokafka and Faust: TLS as a context (no CA file needed to build it here)
    s = load_settings(env=SASL_SSL)
    opts = k.aiokafka_options(s, "ops")
    assert isinstance(opts.pop("ssl_context"), ssl.SSLContext)
    assert opts == {"bootstrap_servers": ["b1:9093", "b2:9093"], "security_protocol": "SASL_SSL", "client_id": "intentstream-ops", **sasl}
    creds = k.broker_credentials(s.kafka)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", "hunter2", "SCRAM-SHA-512")
    assert isinstance(creds.ssl_context, ssl.SSLContext)
    assert k.faust_broker_url(s.kafka) == "kafka://b1:9093;b2:9093"


def test_faust_sasl_defaults_to_plain_and_tls_alone_is_ssl_credentials():
    s = load_settings(env={"INTENTSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "INTENTSTREAM_KAFKA__SASL_USERNAME": "u"})
    creds = k.broker_credentials(s.kafka)
    assert isinstance(creds, faust.SASLCredentials) and creds.mechanism.value == "PLAIN" and creds.ssl_context is None
    assert "sasl_mechanism" not in k.kafka_python_options(s.kafka)  # no mechanism configured: none passed
    s = load_settings(env={"INTENTSTREAM_KAFKA__SECURITY_PROTOCOL": "SSL"})
    assert isinstance(k.broker_credentials(s.kafka), faust.SSLCredentials)


class Recorder:
    """Stands in for a kafka-python client class: keeps the keyword arguments."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


@pytest.fixture
def recorded(monkeypatch):
    import kafka
    import kafka.admin

    for module, name in ((kafka, "KafkaProducer"), (kafka, "KafkaConsumer"), (kafka.admin, "KafkaAdminClient")):
        monkeypatch.setattr(module, name, Recorder)


def test_clients_get_the_connection_options_their_defaults_and_overrides(recorded):
    s = load_settings(env=SASL_SSL)
    conn = k.kafka_python_options(s.kafka)
    producer = k.make_producer(s, linger_ms=0).kwargs
    assert producer == {
        **conn, "enable_idempotence": True, "acks": "all", "max_in_flight_requests_per_connection": 5,
        "allow_auto_create_topics": False, "linger_ms": 0, "batch_size": 256 * 1024,
    }  # fmt: skip
    consumer = k.make_consumer(s).kwargs
    assert consumer == {
        **conn, "group_id": None, "enable_auto_commit": False, "allow_auto_create_topics": False,
        "auto_offset_reset": "earliest", "fetch_max_wait_ms": 200,
    }  # fmt: skip
    admin = dict(k.admin_client(s).kwargs)
    assert callable(admin.pop("kafka_client"))  # a handle on each client, closed after a refused round
    assert admin == {**conn, "request_timeout_ms": 30000, "bootstrap_timeout_ms": 5000}  # bootstrap in 5 s rounds
    assert k.admin_client(s, client_id="tests").kwargs["client_id"] == "tests"
