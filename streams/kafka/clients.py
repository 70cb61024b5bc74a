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
        # Range assignment keeps partition n of every input topic on the same worker,
        # which the per-partition-number state store relies on (co-partitioning).
        "partition.assignment.strategy": "range",
        "isolation.level": "read_committed",
        "session.timeout.ms": settings.session_timeout_ms,
        "max.poll.interval.ms": 300_000,
        "statistics.interval.ms": 5_000,
        "fetch.wait.max.ms": 100,
        # End-of-partition events tell the event-time alignment that a topic is caught up.
        "enable.partition.eof": True,
    })
    if settings.group_instance_id:
        conf["group.instance.id"] = settings.group_instance_id
    conf.update(extra)
    return conf


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    conf = settings.kafka_common()
    conf.update({
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 120_000,
    })
    conf.update(extra)
    return conf


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_common())
