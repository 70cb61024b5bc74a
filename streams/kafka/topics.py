"""Topic layout: names, partition counts and configs, created idempotently.

Input topics are co-partitioned (same partition count, keyed by ``user_id``) and use
``LogAppendTime`` so the broker's append time can be measured end to end.
``segments.current`` is compacted: one record per user, the latest wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.exceptions import ConfigError, KafkaIOError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    t, n = settings.topics, settings.partitions
    inputs = {"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 86_400_000)}
    return [
        TopicSpec(t.clicks, n, inputs),
        TopicSpec(t.orders, n, inputs),
        TopicSpec(t.reviews, n, inputs),
        TopicSpec(t.dlq, n, {"retention.ms": str(30 * 86_400_000)}),
        TopicSpec(t.changes, n, {"retention.ms": str(30 * 86_400_000)}),
        TopicSpec(t.current, n, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000",
                                 "segment.ms": "3600000"}),
        # State changelog: compacted, co-partitioned with the inputs (partition n restores
        # store n). Tombstones of erased users stay a day so every restoring store sees them.
        TopicSpec(t.changelog, n, {"cleanup.policy": "compact", "segment.ms": "3600000",
                                   "min.cleanable.dirty.ratio": "0.1",
                                   "delete.retention.ms": str(86_400_000)}),
        TopicSpec(t.erase, n, {"retention.ms": str(30 * 86_400_000)}),
        TopicSpec(t.audit, n, {"retention.ms": str(5 * 365 * 86_400_000)}),
        TopicSpec(t.churn, n, {"retention.ms": str(30 * 86_400_000)}),
        TopicSpec(t.model_events, 1, {"retention.ms": str(90 * 86_400_000)}),
        TopicSpec(t.enriched, n, {"retention.ms": str(7 * 86_400_000)}),
        *(_scoring_specs(settings) if settings.models_stage == "separate" else ()),
    ]


def _scoring_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of a separate scoring stage: requests co-partitioned with the inputs
    (request partition n holds the users of input partition n), and the stage's own
    state changelog and current records, configured like the event worker's."""
    t, n = settings.topics, settings.partitions
    return [
        TopicSpec(t.scoring, n, {"retention.ms": str(7 * 86_400_000)}),
        TopicSpec(t.scoring_changelog, n, {"cleanup.policy": "compact", "segment.ms": "3600000",
                                           "min.cleanable.dirty.ratio": "0.1",
                                           "delete.retention.ms": str(86_400_000)}),
        TopicSpec(t.scoring_current, n, {"cleanup.policy": "compact",
                                         "min.compaction.lag.ms": "60000",
                                         "segment.ms": "3600000"}),
    ]


def create_topics(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> dict[str, str]:
    """Create missing topics; return ``{name: "created" | "exists"}``."""
    specs = topic_specs(settings)
    existing = admin.list_topics(timeout=timeout).topics
    todo = [s for s in specs if s.name not in existing]
    out = {s.name: "exists" for s in specs if s.name in existing}
    if todo:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions,
                      replication_factor=settings.replication_factor, config=s.config)
             for s in todo],
            operation_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                out[name] = "created"
            except KafkaException as exc:
                if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    out[name] = "exists"
                else:
                    raise KafkaIOError(f"cannot create topic {name}: {exc}") from None
    return out


def delete_topics(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> None:
    names = [s.name for s in topic_specs(settings)]
    existing = admin.list_topics(timeout=timeout).topics
    futures = admin.delete_topics([n for n in names if n in existing], operation_timeout=timeout)
    for fut in futures.values():
        fut.result()


def check_inputs(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> int:
    """Verify the input topics exist and are co-partitioned; return their partition count."""
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaIOError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {exc.args[0].str()}"
        ) from None
    counts: dict[str, int] = {}
    missing = []
    t = settings.topics
    optional: tuple[str, ...] = (t.enriched,) if settings.consume_enriched else ()
    # a separate scoring stage's requests: on the input's partition number
    optional += (t.scoring,) if settings.models_stage == "separate" else ()
    for name in (*t.inputs, t.dlq, t.changes, t.current, t.changelog, t.erase, t.audit,
                 t.churn, t.model_events, *optional):
        topic = md.topics.get(name)
        if topic is None or topic.error is not None:
            missing.append(name)
        else:
            counts[name] = len(topic.partitions)
    if missing:
        raise ConfigError(f"topics missing: {', '.join(missing)}; create them with "
                          "`segstream topics create`")
    inputs = {n: counts[n] for n in (*t.inputs, t.erase, t.changelog, *optional)}
    if len(set(inputs.values())) != 1:
        raise ConfigError(
            f"input topics must have the same partition count (co-partitioned by user_id), "
            f"got {inputs}; recreate or expand them to one count"
        )
    return next(iter(inputs.values()))


def configure_group(settings: Settings, admin: AdminClient, timeout: float = 30.0) -> None:
    """Apply the session timeout to the consumer group (KIP-848 groups take it from the
    broker's group configuration, not from the client).

    Raises
    ------
    ConfigError
        When the broker refuses the value (outside its allowed range).
    """
    if settings.group_protocol != "consumer":
        return
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    ms = settings.session_timeout_ms
    entries = [
        ConfigEntry("consumer.session.timeout.ms", str(ms),
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("consumer.heartbeat.interval.ms", str(max(1000, min(5000, ms // 3))),
                    incremental_operation=AlterConfigOpType.SET),
    ]
    res = ConfigResource(ResourceType.GROUP, settings.group_id, incremental_configs=entries)
    try:
        for fut in admin.incremental_alter_configs([res], request_timeout=timeout).values():
            fut.result()
    except KafkaException as exc:
        err = exc.args[0]
        if err.name() in ("INVALID_CONFIG", "INVALID_REQUEST", "POLICY_VIOLATION"):
            raise ConfigError(
                f"the broker refused SEGSTREAM_SESSION_TIMEOUT_MS={ms} for group "
                f"{settings.group_id!r}: {err.str()}; choose a value within the broker's "
                "group.consumer.min/max.session.timeout.ms (45000 by default) or lower "
                "group.consumer.min.session.timeout.ms on the brokers") from None
        raise KafkaIOError(f"cannot configure group {settings.group_id}: {err.str()}") from None
