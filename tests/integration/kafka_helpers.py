"""Helpers for integration tests against the real broker: isolated settings per test,
producing events, and reading topics to the end."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.config import Secret, Settings, Topics
from streams.kafka.clients import admin
from streams.kafka.topics import create_topics

ROLES = tuple(f.name for f in dataclasses.fields(Topics))


def isolated_settings(bootstrap: str, test_id: str, state_dir: Path, **env: str) -> Settings:
    """Settings with topics, group and state dir private to one test."""
    base = {f"SEGSTREAM_TOPIC_{r.upper()}": f"{test_id}.{r}" for r in ROLES}
    base.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SEGSTREAM_GROUP_ID": f"{test_id}-group",
        "SEGSTREAM_STATE_DIR": str(state_dir),
        "SEGSTREAM_PARTITIONS": "3",
        "SEGSTREAM_POLL_TIMEOUT_S": "0.2",
        "SEGSTREAM_LOG_JSON": "true",
    })
    base.update(env)
    settings = Settings.from_env(base)
    create_topics(settings, admin(settings))
    return settings


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that makes a ``segstream`` subprocess use ``settings``: every field
    as the ``SEGSTREAM_*`` variable that sets it (fields added later included).

    Why every field: a test that sets a variable for its workers (a longer
    ``SEGSTREAM_ALIGN_MAX_IDLE_MS``, say) must not have it dropped silently on the way
    to the subprocess; a hand-written list of variables did that.
    """
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           **{f"SEGSTREAM_TOPIC_{r.upper()}": getattr(settings.topics, r) for r in ROLES}}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in {"topics", "bootstrap_servers"} or not isinstance(
                value, str | int | float | Path | Secret):
            continue  # nested settings objects are read from their own variables
        if isinstance(value, Secret):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"SEGSTREAM_{f.name.upper()}"] = str(value)
    return env


def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes]],
            atomic: bool = False) -> list[tuple[str, int, int]]:
    """Produce ``(topic, key, value)`` records in order; return each one's
    ``(topic, partition, offset)`` once all are acknowledged.

    ``atomic`` writes them in one Kafka transaction: a ``read_committed`` worker that is
    already running sees the whole backfill at once, as if it had been there before.
    """
    conf: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers,
                            "enable.idempotence": True, "linger.ms": 10,
                            "message.max.bytes": 2_000_000}
    if atomic:
        conf["transactional.id"] = f"test-backfill-{time.time_ns()}"
    p = Producer(conf)
    if atomic:
        p.init_transactions(30)
        p.begin_transaction()
    errors: list[str] = []
    where: dict[int, tuple[str, int, int]] = {}

    def ack(i: int) -> Any:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                where[i] = (msg.topic(), msg.partition(), msg.offset())
        return cb

    n = 0
    for topic, key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=ack(n))
                break
            except BufferError:
                p.poll(0.1)
        n += 1
    if atomic:
        p.commit_transaction(60)
    assert p.flush(60) == 0
    assert not errors, errors
    return [where[i] for i in range(n)]


def event_bytes(ev: dict[str, Any]) -> tuple[bytes, bytes]:
    return ev["user_id"].encode(), orjson.dumps(ev)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe"})
    md = c.list_topics(topic, timeout=10)
    out = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
           for p in md.topics[topic].partitions}
    c.close()
    return out


def read_all(settings: Settings, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every committed message of ``topic`` up to its current end (read_committed).

    A partition is done at its end-of-partition event: with transactions the log ends in
    a commit marker that the reader never receives, so counting offsets would not do.
    """
    ends = end_offsets(settings, topic)
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"reader-{time.time_ns()}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[Any] = []
    todo = {p for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        for m in c.consume(1000, 0.2):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    pos = c.position([TopicPartition(topic, m.partition())])[0].offset
                    if pos >= ends[m.partition()]:
                        todo.discard(m.partition())
                continue
            out.append(m)
    c.close()
    if todo:
        raise AssertionError(f"{topic}: partitions {sorted(todo)} not read to their end "
                             f"within {timeout}s")
    return out


class GroupProgress:
    """The group's committed offsets summed over the input topics, with one long-lived
    client so that it can be polled often."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                                   "group.id": settings.group_id,
                                   "enable.auto.commit": False,
                                   # read_committed probes get UNSTABLE_OFFSET_COMMIT
                                   # while a transaction holds offsets
                                   "isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(t, p) for t in settings.topics.inputs
                     for p in range(settings.partitions)]

    def total(self) -> int:
        try:
            # the group coordinator may still be loading on a fresh broker: "not yet"
            return sum(max(tp.offset, 0) for tp in self._consumer.committed(self._tps,
                                                                           timeout=10))
        except KafkaException:
            return -1

    def close(self) -> None:
        self._consumer.close()


def committed_total(settings: Settings) -> int:
    """Sum of the group's committed offsets over the input topics (one-off)."""
    probe = GroupProgress(settings)
    try:
        return probe.total()
    finally:
        probe.close()


def wait_until(pred: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RunningWorker:
    """A worker in a thread of the test process, stopped like SIGTERM would."""

    def __init__(self, settings: Settings, **factories: Any) -> None:
        """``factories``: Kafka client factories to inject (see ``build_worker``)."""
        from streams.runtime.app import build_worker

        self.registry = CollectorRegistry()
        self.worker = build_worker(settings, self.registry, **factories)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def value(self, name: str, **labels: str) -> float:
        """A sample of the worker's registry (0 when absent)."""
        return self.registry.get_sample_value(name, labels) or 0.0
