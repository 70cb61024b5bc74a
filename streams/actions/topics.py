"""The actions app's topics, created idempotently before the app starts.

The input, output and state changelog topics are created here so that their partition
counts are known and equal: the state is co-partitioned with the input topics (a state
write goes to the partition number of its input), and budgets are split across the
change topic's partitions. Changelogs are compacted.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.actions.config import ActionsConfig
from streams.exceptions import ConfigError, KafkaIOError

RETENTION_MS = str(30 * 86_400_000)


def admin(config: ActionsConfig) -> AdminClient:
    """An admin client for the configured broker."""
    return AdminClient(config.kafka_common())


def ensure_topics(config: ActionsConfig, client: AdminClient, timeout: float = 30.0
                  ) -> dict[str, str]:
    """Create missing input and output topics; return ``{name: "created" | "exists"}``.

    Raises
    ------
    ConfigError
        When the change or churn topic exists with a partition count other than
        ``SEGSTREAM_ACTIONS_PARTITIONS``.
    KafkaIOError
        When the broker refuses or cannot be reached.
    """
    t = config.topics
    changelogs = [config.changelog_topic(table) for table in ("users", "budgets", "churn")]
    wanted = [t.changes, t.churn, t.dlq, *t.outputs, *changelogs]
    try:
        existing = client.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise KafkaIOError(f"cannot reach the broker at {config.bootstrap_servers}: "
                           f"{exc}") from None
    for name in (t.changes, t.churn):
        if name in existing and len(existing[name].partitions) != config.partitions:
            raise ConfigError(
                f"topic {name} has {len(existing[name].partitions)} partitions but "
                f"SEGSTREAM_ACTIONS_PARTITIONS={config.partitions}; set it to the topic's "
                "count (tables are co-partitioned with it)")
    for name in (t.dlq, *t.outputs, *changelogs):
        if name in existing and len(existing[name].partitions) < config.partitions:
            raise ConfigError(
                f"topic {name} has {len(existing[name].partitions)} partitions, fewer than "
                f"SEGSTREAM_ACTIONS_PARTITIONS={config.partitions}; an action goes to the "
                "partition number of its input, so add partitions to the topic")
    out = {n: "exists" for n in wanted if n in existing}
    todo = [n for n in dict.fromkeys(wanted) if n not in existing]
    if not todo:
        return out
    futures = client.create_topics(
        [NewTopic(n, num_partitions=config.partitions,
                  replication_factor=config.replication_factor,
                  config={"cleanup.policy": "compact"} if n in changelogs
                  else {"retention.ms": RETENTION_MS}) for n in todo],
        operation_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result()
            out[name] = "created"
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaIOError(f"cannot create topic {name}: {exc}") from None
            out[name] = "exists"
    return out
