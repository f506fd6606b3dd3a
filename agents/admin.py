"""Kafka administration the product needs: creating its topics explicitly, with the
partition counts from the settings, and the least-privilege ACLs of a secured cluster.
The product never relies on the broker's topic auto-creation (the local stack turns it off).

Used by ``scripts/stack topics``, the worker at start-up, and the tests.

On a cluster with ACLs (``scripts/stack up --cluster --secure``) an admin creates the
topics; the worker's :func:`ensure_topics` at start then finds them and goes on, or stops
with one line naming a missing topic it may not create (:class:`TopicsNotAuthorized`).
:func:`worker_acls` is what the worker needs and no more: read its input with its
consumer group, write (and read back, for the outbox recovery and the personas writer)
its outputs, describe them all, and create, read and write Faust's leader topic
``<app_id>-__assignor-__leader``, the only topic Faust makes itself (the worker keeps no
Faust tables, so no changelogs). No cluster-wide permission: the idempotent producers
need WRITE on a topic only (Kafka 3.0+, KIP-679).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from intentstream.agents.kafka import KafkaAccessError, admin_client
from intentstream.agents.topic_names import ACTION_CHANNELS
from intentstream.stream.settings import Settings

log = logging.getLogger(__name__)

CREATED = "created"
EXISTS = "exists"
_NOT_AUTHORIZED = {TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno}


class TopicsNotAuthorized(KafkaAccessError):
    """Topics are missing and this user may not create them (a cluster with ACLs)."""


def product_topics(settings: Settings) -> dict[str, int]:
    """Every topic the product reads or writes, with its partition count.

    >>> from intentstream.stream.settings import load_settings
    >>> sorted(product_topics(load_settings(env={})))[:4]
    ['actions.audit', 'actions.coupon', 'actions.email', 'actions.in_app']
    """
    t = settings.topics
    names = [
        t.clickstream,
        t.dead_letter,
        t.segments,
        *(t.actions_prefix + channel for channel in ACTION_CHANNELS),
        t.audit,
        t.outcomes,
        t.metrics,
        t.alerts,
    ]
    return {name: t.partitions for name in names}


def ensure_topics(
    settings: Settings,
    names_and_partitions: Mapping[str, int] | Iterable[tuple[str, int]] | Iterable[str] | None = None,
    *,
    replication_factor: int | None = None,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    admin: KafkaAdminClient | None = None,
) -> dict[str, str]:
    """Create the topics that do not exist yet and wait until every one has a leader.

    ``names_and_partitions`` is a mapping or pairs of topic name to partition count, or
    bare names (which get ``settings.topics.partitions``); by default every topic of
    :func:`product_topics`. Returns ``{name: "created" | "exists"}``. An existing topic
    is left as it is; one with a different partition count is logged as a warning.
    """
    wanted = _normalise(settings, names_and_partitions)
    if not wanted:
        return {}
    rf = replication_factor if replication_factor is not None else settings.topics.replication_factor
    own_admin = admin is None
    admin = admin or admin_client(settings)
    try:
        request = {
            name: {"num_partitions": n, "replication_factor": rf, "configs": dict(configs or {})}
            for name, n in wanted.items()
        }
        response = admin.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        result: dict[str, str] = {}
        denied: list[str] = []
        for topic in response["topics"]:
            name, code = topic["name"], topic["error_code"]
            if code == 0:
                result[name] = CREATED
            elif code == TopicAlreadyExistsError.errno:
                result[name] = EXISTS
            elif code in _NOT_AUTHORIZED:
                denied.append(name)
            else:
                err = for_code(code)
                raise err(f"creating topic {name!r}: {topic.get('error_message') or err.__name__}")
        if denied:  # not ours to create: fine if an admin did (the metadata shows what we may describe)
            present = set(admin.list_topics())
            missing = sorted(set(denied) - present)
            if missing:
                raise TopicsNotAuthorized(
                    f"topic(s) {', '.join(missing)} are missing (or hidden from user {settings.kafka.sasl_username or '(anonymous)'!r}, "
                    "who may not create them): an admin creates them (`intentstream topics` with admin credentials, "
                    "or `scripts/stack topics --cluster --secure`)"
                )
            log.info("topics exist (created by an admin; this user may not create topics): %s", ", ".join(sorted(denied)))
            result.update(dict.fromkeys(denied, EXISTS))
        admin.wait_for_topics(list(wanted), timeout_ms=int(timeout_s * 1000))
        existing = [name for name, status in result.items() if status == EXISTS]
        if existing:
            for desc in admin.describe_topics(existing):
                have = len(desc.get("partitions") or ())
                if have != wanted[desc["name"]]:
                    log.warning(
                        "topic %s exists with %d partitions, not the %d configured",
                        desc["name"], have, wanted[desc["name"]],
                    )
        return {name: result.get(name, EXISTS) for name in wanted}
    finally:
        if own_admin:
            admin.close()


def _normalise(settings: Settings, items: Any) -> dict[str, int]:
    if items is None:
        return product_topics(settings)
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(items, Mapping):
        pairs = items.items()
    else:
        pairs = [(item, settings.topics.partitions) if isinstance(item, str) else tuple(item) for item in items]
    out: dict[str, int] = {}
    for name, partitions in pairs:
        if not name or int(partitions) < 1:
            raise ValueError(f"bad topic {name!r} with {partitions!r} partitions")
        out[str(name)] = int(partitions)
    return out


# --------------------------------------------------------------------------- ACLs


def _acl(principal: str, op: ACLOperation, kind: ResourceType, name: str) -> ACL:
    return ACL(principal, "*", op, ACLPermissionType.ALLOW, ResourcePattern(kind, name, ACLResourcePatternType.LITERAL))


def worker_acls(settings: Settings, principal: str) -> list[ACL]:
    """The worker's least privilege on a cluster with ACLs (see the module docstring),
    for the topics, consumer group (``[worker] app_id``) and Faust topic of ``settings``.

    >>> from intentstream.stream.settings import load_settings
    >>> acls = worker_acls(load_settings(env={}), "User:worker")
    >>> sorted({(a.operation.name, a.resource_pattern.resource_name) for a in acls if a.operation.name != "DESCRIBE"})[:3]
    [('CREATE', 'intentstream-__assignor-__leader'), ('READ', 'actions.audit'), ('READ', 'actions.coupon')]
    >>> {a.resource_pattern.resource_name for a in acls if a.operation.name == "WRITE"} >= {"segments", "actions.push", "ops.metrics"}
    True
    >>> any(a.operation.name == "WRITE" and a.resource_pattern.resource_name == "clickstream" for a in acls)
    False
    """
    T, G = ResourceType.TOPIC, ResourceType.GROUP
    t = settings.topics
    outputs = [name for name in product_topics(settings) if name != t.clickstream]
    leader = f"{settings.worker.app_id}-__assignor-__leader"  # faust.assignor.LeaderAssignor
    acls = [_acl(principal, op, T, t.clickstream) for op in (ACLOperation.READ, ACLOperation.DESCRIBE)]
    for name in outputs:
        acls += [_acl(principal, op, T, name) for op in (ACLOperation.WRITE, ACLOperation.READ, ACLOperation.DESCRIBE)]
    acls += [_acl(principal, op, T, leader) for op in (ACLOperation.CREATE, ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE)]
    acls += [_acl(principal, op, G, settings.worker.app_id) for op in (ACLOperation.READ, ACLOperation.DESCRIBE)]
    return acls


def reader_acls(topics: Iterable[str], group: str, principal: str) -> list[ACL]:
    """A consumer that may read these topics with its group, and nothing else."""
    acls = [_acl(principal, op, ResourceType.TOPIC, name) for name in topics for op in (ACLOperation.READ, ACLOperation.DESCRIBE)]
    return acls + [_acl(principal, ACLOperation.READ, ResourceType.GROUP, group)]


def grant_acls(settings: Settings, acls: list[ACL], admin: KafkaAdminClient | None = None) -> None:
    """Create these ACLs (idempotent: an ACL that exists is left as it is); needs an admin."""
    own_admin = admin is None
    admin = admin or admin_client(settings)
    try:
        result = admin.create_acls(acls)
        if result.get("failed"):
            acl, err = result["failed"][0]
            raise KafkaError(f"creating {len(result['failed'])} ACL(s) failed, e.g. {acl}: {err}")
    finally:
        if own_admin:
            admin.close()
