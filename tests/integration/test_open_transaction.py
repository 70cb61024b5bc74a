"""A sibling input whose log ends in a transaction that is still open.

A ``read_committed`` consumer reaches the end of such a partition at its last stable
offset, below the high watermark. The transaction's commit markers reach its partitions
one at a time, so a sibling topic's share of the same transaction can already be visible
while this partition's is not. Taking the partition for caught up then (as the worker
did when it compared the end-of-partition event with the watermark cached at the time it
handled it) released the sibling's newer events first, and this partition's older ones
turned ``late`` once the marker arrived: a multi-worker backfill in one transaction lost
orders that way.
"""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from streams.runtime.app import build_worker
from streams.runtime.runner import Worker

from .kafka_helpers import isolated_settings

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def _order(i: int, ts: int) -> bytes:
    return orjson.dumps({"event_id": f"u1-o{i}", "user_id": "u1", "ts": ts,
                         "schema_version": 1, "order_id": f"o{i}", "status": "placed",
                         "total": 40.0, "currency": "EUR", "discount": 0.0,
                         "coupon_code": None, "payment_method": "card"})


def _click(i: int, ts: int) -> bytes:
    return orjson.dumps({"event_id": f"u1-c{i}", "user_id": "u1", "ts": ts,
                         "schema_version": 1, "session_id": "u1-s0", "action": "view",
                         "category": "shoes"})


def _run(w: Worker, seconds: float, until=lambda: False) -> list[Message]:
    """Feed the worker's batch step for a while; return the end-of-partition events."""
    eofs: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        msgs = w.consumer.consume(100, 0.1)
        eofs += [m for m in msgs if m.error() is not None
                 and m.error().code() == KafkaError._PARTITION_EOF]
        w._process_batch(msgs)
    return eofs


def test_end_reached_inside_an_open_transaction_holds_the_siblings_back(
        kafka_bootstrap, test_id, tmp_path):
    # a long idle bound, so that only the caught-up signal decides what is released
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state",
                          SEGSTREAM_ALIGN_MAX_IDLE_MS="60000")
    orders, clicks = s.topics.orders, s.topics.clicks
    t0 = int(time.time() * 1000) - 10 * HOUR
    # 1. three orders in a transaction that stays open
    txn = Producer({"bootstrap.servers": s.bootstrap_servers,
                    "transactional.id": f"{test_id}-upstream"})
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(3):
        txn.produce(orders, key=b"u1", value=_order(i, t0 + i), partition=0)
    assert txn.flush(30) == 0
    w = build_worker(s)
    try:
        w._on_assign(w.consumer, [TopicPartition(orders, 0), TopicPartition(clicks, 0)])
        # 2. both partitions are read to their end: the orders one at offset 0, below
        #    its high watermark of 3
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and seen != {orders, clicks}:
            seen |= {m.topic() for m in _run(w, 0.5)}
        assert seen == {orders, clicks}
        assert w.consumer.get_watermark_offsets(TopicPartition(orders, 0), cached=True)[1] == 3
        assert w._caught_up(orders, 0) is not True

        # 3. a click five hours newer arrives, committed: it must wait for the orders
        plain = Producer({"bootstrap.servers": s.bootstrap_servers})
        plain.produce(clicks, key=b"u1", value=_click(0, t0 + 5 * HOUR), partition=0)
        assert plain.flush(30) == 0
        _run(w, 30, until=lambda: w.aligner.buffered() == 1 or w.processed > 0)
        _run(w, 1)  # and a little longer: still held back
        assert w.aligner.buffered() == 1 and w.processed == 0

        # 4. the transaction commits: the orders come first, then the click, none late
        txn.commit_transaction(30)
        _run(w, 30, until=lambda: w.processed == 4)
        assert w.processed == 4
        assert not w.dead_letters
    finally:
        w._shutdown()
