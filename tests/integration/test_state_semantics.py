"""State semantics on the real broker: duplicates are ignored, late events dead-lettered,
time alone moves users between segments, and an erased user leaves no trace."""

from __future__ import annotations

import hashlib
import time
import zlib

import orjson
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from streams.contracts.erase import erase_request
from streams.kafka.clients import admin
from streams.kafka.dlq import parse_headers
from streams.runtime.store import PartitionStore

from .kafka_helpers import (
    RunningWorker,
    committed_total,
    isolated_settings,
    produce,
    read_all,
    wait_until,
)

pytestmark = pytest.mark.integration

DAY = 86_400_000


def _order(user: str, oid: str, ts: int, total: float = 50.0) -> dict:
    return {"event_id": f"{user}-{oid}", "user_id": user, "ts": ts, "schema_version": 1,
            "order_id": oid, "status": "placed", "total": total, "currency": "EUR"}


def _click(user: str, i: int, ts: int) -> dict:
    return {"event_id": f"{user}-c{i}", "user_id": user, "ts": ts, "schema_version": 1,
            "session_id": f"{user}-s{i}", "action": "view"}


def _states(settings) -> dict:
    out = {}
    for p in range(settings.partitions):
        path = settings.state_dir / settings.group_id / f"p{p}"
        if path.exists():
            store = PartitionStore(path)
            out.update(dict(store.iter_states()))
            store.close()
    return out


def test_duplicates_late_events_and_time_based_changes(kafka_bootstrap, test_id, tmp_path):
    # one partition: every user shares the partition's event-time watermark
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state",
                          SEGSTREAM_PARTITIONS="1", SEGSTREAM_ALLOWED_LATENESS_S="3600")
    t0 = int(time.time() * 1000) - 200 * DAY
    dora = [_order("dora", "d1", t0), _order("dora", "d2", t0 + DAY)]
    # erik keeps the partition's event time moving for 70 days; dora does nothing more
    erik = [_click("erik", i, t0 + 2 * DAY + i * DAY) for i in range(70)]
    dup = _order("dora", "d2", t0 + DAY)  # the producer retried: same event_id
    late = _click("erik", 999, t0 + 2 * DAY)  # days behind erik's latest event
    records = ([(s.topics.orders, b"dora", orjson.dumps(e)) for e in dora]
               + [(s.topics.orders, b"dora", orjson.dumps(dup))]
               + [(s.topics.clicks, b"erik", orjson.dumps(e)) for e in erik])
    produce(s, records)
    w = RunningWorker(s)
    try:
        wait_until(lambda: committed_total(s) == len(records), 60, what="input committed")
        produce(s, [(s.topics.clicks, b"erik", orjson.dumps(late))])
        wait_until(lambda: committed_total(s) == len(records) + 1, 60, what="late committed")
    finally:
        w.stop()

    assert w.value("segstream_duplicates_total", topic=s.topics.orders) == 1
    state = _states(s)["dora"]
    assert state.orders_lifetime == 2 and state.events == 2
    # dormant came from the watermark (erik's clicks), not from an event of dora's
    changes = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    dormant = [c for c in changes if c["user_id"] == "dora" and c["segment"] == "dormant"]
    assert len(dormant) == 1 and dormant[0]["change"] == "entered"
    assert dormant[0]["source"]["topic"] == "timer"
    assert t0 + DAY + 60 * DAY <= dormant[0]["at_ms"] <= t0 + DAY + 62 * DAY
    new_exit = [c for c in changes if c["user_id"] == "dora" and c["segment"] == "new_customer"]
    assert [c["change"] for c in new_exit] == ["entered", "exited"]
    assert w.value("segstream_timers_fired_total", trigger="watermark") > 0
    # the late click changed nothing and sits in the DLQ with its reason
    dlq = read_all(s, s.topics.dlq)
    assert [parse_headers(m.headers())["dlq.reason"] for m in dlq] == ["late"]
    assert dlq[0].value() == orjson.dumps(late)
    assert _states(s)["erik"].events == 70


def _compact_fast(s, topics: list[str]) -> None:
    """Make the broker compact these topics within seconds (test-only topic configs)."""
    res = [ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in {"segment.ms": "500", "min.cleanable.dirty.ratio": "0.001",
                     "delete.retention.ms": "500", "min.compaction.lag.ms": "0"}.items()])
        for t in topics]
    client = admin(s)
    for fut in client.incremental_alter_configs(res).values():
        fut.result()


def test_erasure_leaves_no_trace(kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    _compact_fast(s, [s.topics.changelog, s.topics.current])
    t0 = int(time.time() * 1000) - 10 * DAY
    events = [_order(u, f"{u}{i}", t0 + i * DAY, 500.0) for u in ("alice", "bob")
              for i in range(3)]
    records = [(s.topics.orders, e["user_id"].encode(), orjson.dumps(e)) for e in events]
    produce(s, records)
    w = RunningWorker(s)
    try:
        wait_until(lambda: committed_total(s) == len(records), 60, what="input committed")
        produce(s, [(s.topics.erase, b"alice",
                     erase_request("alice", "req-1", int(time.time() * 1000), "dpo"))])
        wait_until(lambda: w.value("segstream_erasures_total") == 1, 60, what="erasure")
        # later events for alice start a fresh state
        later = _order("alice", "new", int(time.time() * 1000) - 1000, 20.0)
        produce(s, [(s.topics.orders, b"alice", orjson.dumps(later))])
        wait_until(lambda: committed_total(s) == len(records) + 1, 60, what="later event")
        fresh = _states_live(w)["alice"]
        assert fresh.orders_lifetime == 1 and fresh.events == 1
        # erase again: nothing of alice may remain anywhere
        produce(s, [(s.topics.erase, b"alice",
                     erase_request("alice", "req-2", int(time.time() * 1000), "dpo"))])
        wait_until(lambda: w.value("segstream_erasures_total") == 2, 60, what="erasure 2")
    finally:
        w.stop()

    assert "alice" not in _states(s) and "bob" in _states(s)
    audit = [orjson.loads(m.value()) for m in read_all(s, s.topics.audit)]
    subject = hashlib.sha256(b"alice").hexdigest()
    assert sorted(a["request_id"] for a in audit) == ["req-1", "req-2"]
    assert all(a["subject_sha256"] == subject and a["had_state"] for a in audit)
    assert not any(b"alice" in m.value() for m in read_all(s, s.topics.audit))

    def last_values(topic: str) -> dict[bytes, bytes | None]:
        out: dict[bytes, bytes | None] = {}
        for m in read_all(s, topic):
            out[m.key()] = m.value()
        return out

    # the latest record of alice is a tombstone in the changelog and in segments.current
    assert last_values(s.topics.changelog)[b"alice"] is None
    assert last_values(s.topics.current)[b"alice"] is None
    assert last_values(s.topics.changelog)[b"bob"] is not None

    # after compaction (and the tombstone retention) the keys are gone altogether
    # records to another key of alice's partition roll its active segment, so the
    # cleaner can compact the segment holding alice's records
    part = zlib.crc32(b"alice") % s.partitions
    roll = next(k for k in (f"roll{i}".encode() for i in range(1000))
                if zlib.crc32(k) % s.partitions == part)

    def gone() -> bool:
        produce(s, [(s.topics.current, roll, b"{}"), (s.topics.changelog, roll, None)])
        keys = {m.key() for t in (s.topics.changelog, s.topics.current)
                for m in read_all(s, t)}
        return b"alice" not in keys

    wait_until(gone, 150, interval=3.0, what="compaction to remove alice's records")


def _states_live(w: RunningWorker) -> dict:
    out = {}
    for store in list(w.worker.stores.values()):
        for user in ("alice", "bob"):
            st = store.get(user)
            if st is not None:
                out[user] = st
    return out
