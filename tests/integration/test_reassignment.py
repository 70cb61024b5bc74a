"""A partition that comes back to a worker after others wrote to it.

librdkafka keeps a partition's cached high watermark after it is unassigned. A worker
that owned a partition before any data existed (watermark 0) and gets it back after a
failover sees that stale 0 until its first fetch; the event-time alignment must not take
the partition for caught up on it, or its siblings are released ahead of it and its own
older events turn ``late`` (the failover test caught this as unexpected dead letters).
"""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition

from streams.runtime.app import build_worker

from .kafka_helpers import isolated_settings

pytestmark = pytest.mark.integration


def _click(i: int, ts: int) -> bytes:
    return orjson.dumps({"event_id": f"u1-c{i}", "user_id": "u1", "ts": ts,
                         "schema_version": 1, "session_id": "u1-s0", "action": "view",
                         "category": "shoes"})


def test_partition_assigned_again_is_not_caught_up_on_its_stale_watermark(
        kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    clicks = s.topics.clicks
    w = build_worker(s)
    try:
        # 1. the worker reads the empty partition to its end: watermark 0 is cached
        w.consumer.assign([TopicPartition(clicks, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = w.consumer.poll(0.2)
            if m is not None and m.error() is not None \
                    and m.error().code() == KafkaError._PARTITION_EOF:
                break
        else:
            pytest.fail("no end-of-partition event from the empty partition")
        w.consumer.unassign()
        # a fetch still in flight would return (and refresh the cache) when data arrives
        time.sleep(1.5)
        assert w.consumer.get_watermark_offsets(TopicPartition(clicks, 0), cached=True)[1] == 0

        # 2. meanwhile (another owner's time) five events land in it
        p = Producer({"bootstrap.servers": s.bootstrap_servers})
        t0 = int(time.time() * 1000) - 3_600_000
        for i in range(5):
            p.produce(clicks, key=b"u1", value=_click(i, t0 + i), partition=0)
        assert p.flush(30) == 0

        # 3. the partition comes back: the cache still says 0, the broker says 5
        assert w.consumer.get_watermark_offsets(TopicPartition(clicks, 0), cached=True)[1] == 0
        w._on_assign(w.consumer, [TopicPartition(clicks, 0)])
        assert w._caught_up(clicks, 0) is False

        # 4. once its events are consumed (and the end reached) it is caught up
        got = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and w._caught_up(clicks, 0) is not True:
            msgs = w.consumer.consume(100, 0.2)
            got += sum(1 for m in msgs if m.error() is None)
            w._process_batch(msgs)
        assert got == 5
        assert w._caught_up(clicks, 0) is True
        assert w.processed == 5 and not w.dead_letters
    finally:
        w._shutdown()
