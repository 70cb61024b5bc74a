"""Metric label values stay in bounded sets, whatever the traffic: no user id, order id,
event id or free text ever becomes a label value.

The integration test runs realistic simulated traffic plus malformed messages (whose ids
and keys are unique per message) through a real worker on the real broker, then checks
every series of the registry that ``/metrics`` serves.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from models.segments.policy import SegmentPolicy
from streams.config import Settings
from streams.contracts.decode import DLQ_REASONS
from streams.contracts.events import EVENT_TYPES
from streams.runtime.app import build_worker
from streams.sim.generator import generate
from tests.integration.kafka_helpers import (
    committed_total,
    isolated_settings,
    produce,
    wait_until,
)

# Any label of any family: at most this many distinct values in one process.
MAX_VALUES_PER_LABEL = 64
IDENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}$")  # a token, not a sentence


def closed_sets(settings: Settings, policy: SegmentPolicy) -> dict[tuple[str, str], set[str]]:
    """Exactly which values each (family, label) of the worker may carry."""
    t = settings.topics
    all_topics = {getattr(t, f.name) for f in dataclasses.fields(t)}
    segments = {r.name for r in policy.rules}
    partitions = {str(p) for p in range(settings.partitions)}
    return {
        ("segstream_events_consumed", "topic"): set(t.inputs),
        ("segstream_events_consumed", "type"): set(EVENT_TYPES) | {"invalid"},
        ("segstream_dlq", "reason"): set(DLQ_REASONS),
        ("segstream_segment_changes", "segment"): segments,
        ("segstream_segment_changes", "change"): {"entered", "exited"},
        ("segstream_segment_members", "segment"): segments,
        ("segstream_outputs", "topic"): all_topics,
        ("segstream_duplicates", "topic"): all_topics,
        ("segstream_consumer_lag", "topic"): set(t.inputs),
        ("segstream_consumer_lag", "partition"): partitions,
        ("segstream_restore_records", "partition"): partitions,
        ("segstream_restore_remaining", "partition"): partitions,
    }


def label_problems(registry: CollectorRegistry, closed: Mapping[tuple[str, str], set[str]],
                   forbidden: Iterable[str]) -> list[str]:
    """Every way the registry's label values break the cardinality rules."""
    forbidden = set(forbidden)
    values: dict[tuple[str, str], set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in ("le", "quantile"):
                    continue
                values.setdefault((family.name, label), set()).add(value)
    problems = []
    for (fam, label), seen in sorted(values.items()):
        if len(seen) > MAX_VALUES_PER_LABEL:
            problems.append(f"{fam}{{{label}}}: {len(seen)} distinct values")
        leaked = seen & forbidden
        if leaked:
            problems.append(f"{fam}{{{label}}}: ids from the traffic {sorted(leaked)[:3]}")
        text = sorted(v for v in seen if not IDENT.match(v))
        if text:
            problems.append(f"{fam}{{{label}}}: free-text values {text[:3]}")
        allowed = closed.get((fam, label))
        if allowed is not None and not seen <= allowed:
            problems.append(f"{fam}{{{label}}}: outside its set {sorted(seen - allowed)[:3]}")
    return problems


# ------------------------------------------------------------- the checker itself
def test_checker_flags_user_ids_text_and_unbounded_labels():
    reg = CollectorRegistry()
    c = Counter("segstream_dlq_total", "d", ["reason"], registry=reg)
    c.labels("malformed_json").inc()
    s = Settings.from_env({})
    closed = closed_sets(s, SegmentPolicy.load())
    assert label_problems(reg, closed, {"u000001"}) == []

    c.labels("u000001").inc()
    g = Gauge("segstream_llm_thing", "x", ["kind"], registry=reg)
    g.labels("Great product, would buy again").set(1)
    for i in range(MAX_VALUES_PER_LABEL + 1):
        g.labels(f"k{i}").set(i)
    problems = label_problems(reg, closed, {"u000001"})
    assert any("ids from the traffic ['u000001']" in p for p in problems)
    assert any("segstream_dlq{reason}: outside its set ['u000001']" in p for p in problems)
    assert any("free-text values ['Great product" in p for p in problems)
    assert any(f"{MAX_VALUES_PER_LABEL + 2} distinct values" in p for p in problems)


# ------------------------------------------------------------- real traffic
def _ids(events: Iterable[Mapping[str, Any]]) -> set[str]:
    keys = ("user_id", "event_id", "order_id", "session_id", "product_id", "query", "text",
            "coupon_code")
    out = set()
    for e in events:
        out.update(str(e[k]) for k in keys if e.get(k))
        out.update(str(i["product_id"]) for i in e.get("items") or ())
    return out


@pytest.mark.integration
def test_worker_labels_stay_bounded_under_real_traffic(kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    now_ms = int(time.time() * 1000)
    sim = generate(100, 6_000, seed=11, end_ms=now_ms - 60_000, days=60)
    events = list(sim.events())
    topic = {"click": s.topics.clicks, "order": s.topics.orders, "review": s.topics.reviews}
    records = [(topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in events]
    # Bad messages, each with its own user id and text: none may become a label value.
    bad: list[dict[str, Any]] = []
    for i in range(40):
        user = f"leak-user-{i}"
        ev = {"event_id": f"leak-ev-{i}", "user_id": user, "ts": now_ms - 1000,
              "schema_version": 1, "order_id": f"leak-order-{i}", "status": "placed",
              "total": -5.0, "currency": "EUR", "payment_method": "card"}
        bad.append(ev)
        records.append((s.topics.orders, user.encode(), orjson.dumps(ev)))  # out_of_range
        records.append((s.topics.clicks, f"other-{user}".encode(), orjson.dumps(
            {**ev, "session_id": f"leak-session-{i}", "action": "view"})))  # key_mismatch
        records.append((s.topics.reviews, user.encode(),
                        f"not json: review text number {i}".encode()))  # malformed_json
    produce(s, records)

    registry = CollectorRegistry()
    worker = build_worker(s, registry)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: committed_total(s) == len(records), 120, what="all input committed")
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive()

    forbidden = _ids(events) | _ids(bad) | {f"other-leak-user-{i}" for i in range(40)}
    closed = closed_sets(s, SegmentPolicy.load())
    assert label_problems(registry, closed, forbidden) == []
    # the traffic did exercise the labelled families
    reasons = {smp.labels["reason"] for f in registry.collect() if f.name == "segstream_dlq"
               for smp in f.samples if smp.name.endswith("_total")}
    assert {"out_of_range", "key_mismatch", "malformed_json"} <= reasons
    segments = {smp.labels["segment"] for f in registry.collect()
                if f.name == "segstream_segment_changes" for smp in f.samples}
    assert len(segments) >= 3
