"""Factories for confluent-kafka clients, configured from :class:`Settings`.

Tests inject their own factories (a callable taking the config dict) instead of
patching these; production code never builds a client anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams.config import Settings

ConsumerFactory = Callable[[dict[str, Any]], Consumer]
ProducerFactory = Callable[[dict[str, Any]], Producer]


def consumer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    conf = settings.kafka_common()
    conf.update({
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "max.poll.interval.ms": 300_000,
        "statistics.interval.ms": 5_000,
        "fetch.wait.max.ms": 100,
        # Prefetched messages held by librdkafka (default 64 MiB): a backlog otherwise
        # parks that much in the worker's memory; 16 MiB is still thousands of batches.
        "queued.max.messages.kbytes": 16_384,
        # End-of-partition events tell the event-time alignment that a topic is caught up.
        "enable.partition.eof": True,
    })
    # Partition n of every input topic must land on the same worker: the state store is
    # per partition number (co-partitioning). Both protocols use range assignment; the
    # KIP-848 broker-side range assignor is also sticky and moves partitions incrementally
    # (no stop-the-world rebalance), which is why it is the default.
    if settings.group_protocol == "consumer":
        conf.update({"group.protocol": "consumer", "group.remote.assignor": "range"})
    else:
        conf.update({"group.protocol": "classic", "partition.assignment.strategy": "range",
                     "session.timeout.ms": settings.session_timeout_ms})
    if settings.group_instance_id:
        conf["group.instance.id"] = settings.group_instance_id
    conf.update(extra)
    return conf


def restore_consumer_config(settings: Settings) -> dict[str, Any]:
    """A group-less consumer that reads a changelog partition to its end."""
    conf = settings.kafka_common()
    conf.update({
        "group.id": f"{settings.group_id}.restore",  # never joins: assign() only
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 50,
    })
    return conf


def producer_config(settings: Settings, transactional_id: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    conf = settings.kafka_common()
    conf.update({
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 120_000,
    })
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # a transaction must be able to finish within its timeout
        conf["message.timeout.ms"] = settings.transaction_timeout_ms
    conf.update(extra)
    return conf


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_common())
