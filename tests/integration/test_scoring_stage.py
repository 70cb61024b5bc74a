"""A separate scoring stage on the real broker: the event worker and the scoring stage
run side by side, each in its own consumer group with its own state and transactions.

What must hold: every scoring request the event worker commits is consumed and
committed by the scoring stage; rule segments come only from the event worker and model
segments only from the scoring stage, each with its own compacted current records; the
model changes carry scores, a model version and the input event they came from; churn
alerts are raised; no change is written twice; the models' snapshot names the scoring
topic's offsets."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from models.learn.snapshot import load_newest_valid
from streams.config import Settings
from streams.contracts.erase import erase_request
from streams.runtime.app import build_worker
from streams.sim.generator import generate

from .kafka_helpers import committed_total, isolated_settings, produce, read_all, wait_until

pytestmark = pytest.mark.integration

MODEL_SEGMENTS = ("cluster.", "churn_risk", "vip")


def _scoring_committed(z: Settings) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": z.bootstrap_servers, "group.id": z.group_id,
                  "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    try:
        tps = [TopicPartition(z.topics.scoring, p) for p in range(z.partitions)]
        return {tp.partition: max(tp.offset, 0) for tp in c.committed(tps, timeout=10)}
    finally:
        c.close()


def test_event_worker_and_scoring_stage_side_by_side(kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state",
                          SEGSTREAM_MODELS_ENABLED="true", SEGSTREAM_MODELS_STAGE="separate",
                          SEGSTREAM_MODEL_SNAPSHOT_DIR=str(tmp_path / "models"),
                          SEGSTREAM_MODEL_MIN_LEARNED="100",
                          SEGSTREAM_CHURN_HORIZON_DAYS="14")
    z = s.scoring_stage()
    now = int(time.time() * 1000)
    events = list(generate(300, 20_000, seed=5, end_ms=now - 86_400_000, days=90).events())
    topic = {"click": s.topics.clicks, "order": s.topics.orders, "review": s.topics.reviews}
    produce(s, [(topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in events])

    registries = {"events": CollectorRegistry(), "scoring": CollectorRegistry()}
    workers = {"events": build_worker(s, registries["events"]),
               "scoring": build_worker(z, registries["scoring"])}
    threads = {name: threading.Thread(target=w.run, daemon=True, name=name)
               for name, w in workers.items()}
    for t in threads.values():
        t.start()
    try:
        wait_until(lambda: committed_total(s) >= len(events), 180, what="inputs committed")
        # the offsets after the last request of each partition (the end offsets count
        # the commit markers of the event worker's transactions as well)
        last: dict[int, int] = {}
        for m in read_all(s, s.topics.scoring):
            last[m.partition()] = m.offset() + 1
        wait_until(lambda: _scoring_committed(z) == {p: last.get(p, 0)
                                                     for p in range(z.partitions)}, 180,
                   what="scoring requests committed by the scoring stage")
        # an erasure reaches both stages: each deletes what it holds and says so
        erased = events[0]["user_id"]
        produce(s, [(s.topics.erase, erased.encode(),
                     erase_request(erased, "req-1", int(time.time() * 1000)))])
        wait_until(lambda: len(read_all(s, s.topics.audit, timeout=2)) >= 2, 60,
                   what="an audit record from each stage")
    finally:
        for w in workers.values():
            w.stop()
        for t in threads.values():
            t.join(60)
    assert not any(t.is_alive() for t in threads.values())

    # 1. every request the event worker committed reached the scoring stage
    sent = registries["events"].get_sample_value("segstream_scoring_requests_total")
    requests = [orjson.loads(m.value()) for m in read_all(s, s.topics.scoring)]
    assert sent and len(requests) == sent
    assert workers["scoring"].processed >= len(requests)
    assert workers["scoring"].dead_letters == {} and workers["scoring"].duplicates == 0
    assert sum(r["rescore"] for r in requests) < len(requests), "orders alone are sent too"

    # 2. who decides what: rule segments in the event worker, model segments here
    changes = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    assert len({c["event_id"] for c in changes}) == len(changes), "no change written twice"
    model = [c for c in changes if c["segment"].startswith(MODEL_SEGMENTS)]
    rules = [c for c in changes if not c["segment"].startswith(MODEL_SEGMENTS)]
    assert model and rules
    assert all(c["scores"] and c["model_version"] for c in model)
    assert all(not c["scores"] and c["model_version"] is None for c in rules)
    kinds = Counter(c["segment"].split(".")[0] for c in model)
    assert kinds["cluster"] and kinds["churn_risk"], kinds
    assert {c["source"]["topic"] for c in model} <= {*s.topics.inputs, "timer"}
    assert all(c["source"]["event_id"] for c in model if c["source"]["topic"] != "timer")
    rule_current = [orjson.loads(m.value()) for m in read_all(s, s.topics.current)
                    if m.value() is not None]  # the erased user's tombstone
    model_current = [orjson.loads(m.value()) for m in read_all(s, z.topics.current)
                     if m.value() is not None]
    assert model_current and all(seg.startswith(MODEL_SEGMENTS)
                                 for r in model_current for seg in r["segments"])
    assert all(not seg.startswith(MODEL_SEGMENTS) for r in rule_current for seg in r["segments"])

    audit = [orjson.loads(m.value()) for m in read_all(s, s.topics.audit)]
    assert sorted(a["stage"] for a in audit) == ["events", "scoring"]
    assert all(a["had_state"] and a["request_id"] == "req-1" for a in audit)
    assert {a["deleted"][2] for a in audit} == {s.topics.current, z.topics.current}
    tombstoned = [m for m in read_all(s, z.topics.current)
                  if m.key() == erased.encode() and m.value() is None]
    assert tombstoned, "the user's model segments are gone from the current records"

    # 3. alerts and the models' snapshot (offsets of the scoring topic)
    alerts = [orjson.loads(m.value()) for m in read_all(s, s.topics.churn)]
    assert alerts and all(a["tier"] == "high" and a["top_features"] for a in alerts)
    found = load_newest_valid(z.models.snapshot_dir)
    assert found is not None
    suite, meta = found
    assert suite.learned["churn"] > 0
    offsets: dict[str, Any] = meta["offsets"]
    assert offsets and all(k.startswith(z.topics.scoring + "/") or k.startswith(z.topics.erase)
                           for k in offsets)
    print(f"events {len(events)}, requests {len(requests)} "
          f"({sum(r['rescore'] for r in requests)} rescoring), rule changes {len(rules)}, "
          f"model changes {len(model)} {dict(kinds)}, alerts {len(alerts)}")
