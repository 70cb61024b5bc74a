"""The whole pipeline on the real broker: known events in, the exact changes out, and
every bad message in the dead-letter topic with its original bytes and position."""

from __future__ import annotations

import time

import orjson
import pytest

from streams.kafka.dlq import parse_headers
from streams.runtime.app import build_policy

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


def _order(user, oid, ts, total, coupon=None, discount=0.0):
    return {"event_id": f"{user}-{oid}", "user_id": user, "ts": ts, "schema_version": 1,
            "order_id": oid, "status": "placed", "total": total, "currency": "EUR",
            "discount": discount, "coupon_code": coupon, "payment_method": "card"}


def _click(user, i, ts):
    return {"event_id": f"{user}-c{i}", "user_id": user, "ts": ts, "schema_version": 1,
            "session_id": f"{user}-s{i // 20}", "action": "view", "category": "shoes"}


def test_known_sequence_yields_exactly_the_expected_changes(kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    t0 = int(time.time() * 1000) - 10 * DAY
    events = [
        (s.topics.orders, _order("alice", "a1", t0, 400)),
        (s.topics.orders, _order("alice", "a2", t0 + DAY, 400)),
        (s.topics.orders, _order("alice", "a3", t0 + 2 * DAY, 400)),
        (s.topics.orders, _order("alice", "a4", t0 + 3 * DAY, 50)),
        (s.topics.orders, _order("carol", "c1", t0, 70, "SAVE30", 30)),
        (s.topics.orders, _order("carol", "c2", t0 + DAY, 70, "SAVE30", 30)),
        *[(s.topics.clicks, _click("bob", i, t0 + i * 60_000)) for i in range(65)],
    ]
    produce(s, [(t, e["user_id"].encode(), orjson.dumps(e)) for t, e in events])
    w = RunningWorker(s)
    try:
        wait_until(lambda: committed_total(s) == len(events), 60, what="all input committed")
    finally:
        w.stop()

    changes = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    by_user: dict[str, list[tuple[str, str]]] = {}
    for ch in sorted(changes, key=lambda c: (c["user_id"], c["source"]["offset"])):
        by_user.setdefault(ch["user_id"], []).append((ch["segment"], ch["change"]))
    assert by_user == {
        "alice": [("new_customer", "entered"), ("vip", "entered"), ("new_customer", "exited")],
        "bob": [("high_activity", "entered")],
        "carol": [("new_customer", "entered"), ("price_sensitive", "entered")],
    }
    vip = next(c for c in changes if c["segment"] == "vip")
    assert vip["reasons"] == [
        {"feature": "spend_365d", "op": ">=", "value": 1200.0, "threshold": 1000.0},
        {"feature": "orders_365d", "op": ">=", "value": 3.0, "threshold": 3.0}]
    assert vip["at_ms"] == t0 + 2 * DAY and vip["source"]["event_id"] == "alice-a3"
    assert all(c["policy_version"] == build_policy(s).version for c in changes)
    assert len({c["event_id"] for c in changes}) == len(changes)

    current = {}
    for m in read_all(s, s.topics.current):
        current[m.key().decode()] = orjson.loads(m.value())
    assert {u: sorted(v["segments"]) for u, v in current.items()} == {
        "alice": ["vip"], "bob": ["high_activity"], "carol": ["new_customer", "price_sensitive"]}
    assert read_all(s, s.topics.dlq) == []


def test_bad_messages_go_to_the_dlq_with_reason_bytes_and_position(
        kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    t0 = int(time.time() * 1000) - 5 * DAY
    good = [_order("dave", f"d{i}", t0 + i * DAY, 400) for i in range(3)]
    bad = {
        "malformed_json": (s.topics.orders, b"dave", b'{"event_id": "x", "user_id": '),
        "wrong_type": (s.topics.orders, b"dave",
                       orjson.dumps({**_order("dave", "w", t0, 10), "total": "ten"})),
        "missing_field": (s.topics.clicks, b"dave",
                          orjson.dumps({k: v for k, v in _click("dave", 1, t0).items()
                                        if k != "session_id"})),
        "unknown_type": (s.topics.clicks, b"dave",
                         orjson.dumps({**_click("dave", 2, t0), "type": "hover"})),
        "oversized": (s.topics.reviews, b"dave",
                      orjson.dumps({"event_id": "r", "user_id": "dave", "ts": t0,
                                    "schema_version": 1, "rating": 5,
                                    "text": "x" * 9_000, "pad": "y" * 70_000})),
        "key_mismatch": (s.topics.orders, b"mallory",
                         orjson.dumps(_order("dave", "k", t0 + DAY // 2, 10))),
        "invalid_enum": (s.topics.clicks, b"dave",
                         orjson.dumps({**_click("dave", 3, t0), "action": "teleport"})),
    }
    binary = (s.topics.clicks, b"dave", bytes(range(256)))
    records = [
        (s.topics.orders, b"dave", orjson.dumps(good[0])),
        *list(bad.values())[:4],
        (s.topics.orders, b"dave", orjson.dumps(good[1])),
        binary,
        *list(bad.values())[4:],
        (s.topics.orders, b"dave", orjson.dumps(good[2])),
    ]
    positions = produce(s, records)
    w = RunningWorker(s)
    try:
        wait_until(lambda: committed_total(s) == len(records), 60, what="all input committed")
    finally:
        w.stop()

    dlq = read_all(s, s.topics.dlq)
    assert len(dlq) == len(bad) + 1
    seen = {}
    for m in dlq:
        h = parse_headers(m.headers())
        src = (h["dlq.source.topic"], int(h["dlq.source.partition"]),
               int(h["dlq.source.offset"]))
        original = records[positions.index(src)]
        assert m.value() == original[2] and m.key() == original[1]
        assert h["dlq.detail"]
        seen.setdefault(h["dlq.reason"], []).append(m.value())
    assert sorted(seen.pop("malformed_json")) == sorted([bad["malformed_json"][2], binary[2]])
    assert {r: v[0] for r, v in seen.items()} == {r: b[2] for r, b in bad.items()
                                                  if r != "malformed_json"}

    # the valid events around the bad ones were processed
    changes = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    assert {(c["segment"], c["change"]) for c in changes} == {("new_customer", "entered"),
                                                             ("vip", "entered")}
    # and the DLQ count is exposed by reason
    reg = w.registry
    assert reg.get_sample_value("segstream_dlq_total", {"reason": "malformed_json"}) == 2
    assert reg.get_sample_value("segstream_dlq_total", {"reason": "oversized"}) == 1
    assert reg.get_sample_value("segstream_events_consumed_total",
                                {"topic": s.topics.orders, "type": "order"}) == 3
