"""The product's topic names beyond the settings: the action channels, each with a topic
``<[topics] actions_prefix><channel>``, and the short names the operator commands accept
for the configured topics."""

from __future__ import annotations

from intentstream.stream.settings import Settings

#: Channels with an outbound action topic ``<topics.actions_prefix><channel>``.
ACTION_CHANNELS: tuple[str, ...] = ("push", "sms", "email", "in_app", "coupon")

#: Short topic names the operator commands accept, and the settings they stand for.
SHORT_NAMES: tuple[str, ...] = ("clickstream", "dlq", "segments", "audit", "outcomes", "metrics", "alerts", *ACTION_CHANNELS)


def resolve_topic(name: str, settings: Settings) -> str:
    """The configured topic a short name stands for; any other name is used literally.

    >>> from intentstream.stream.settings import load_settings
    >>> s = load_settings(env={"INTENTSTREAM_TOPICS__ACTIONS_PREFIX": "act."})
    >>> [resolve_topic(n, s) for n in ("dlq", "push", "metrics", "my.topic")]
    ['clickstream.dlq', 'act.push', 'ops.metrics', 'my.topic']
    """
    t = settings.topics
    named = {
        "clickstream": t.clickstream,
        "dlq": t.dead_letter,
        "dead_letter": t.dead_letter,
        "segments": t.segments,
        "audit": t.audit,
        "outcomes": t.outcomes,
        "metrics": t.metrics,
        "alerts": t.alerts,
    }
    if name in named:
        return named[name]
    if name in ACTION_CHANNELS:
        return t.actions_prefix + name
    return name
