"""The online models inside the worker on the real broker: scores and model_version on
every change, churn alerts on their topic, a snapshot with the offsets seen at shutdown,
and a restarted worker that continues from that snapshot."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from prometheus_client import CollectorRegistry

from models.learn.snapshot import load_newest_valid
from streams.runtime.app import build_worker
from streams.sim.generator import generate

from .kafka_helpers import committed_total, isolated_settings, produce, read_all, wait_until

pytestmark = pytest.mark.integration


def _run(settings, until_committed: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    worker = build_worker(settings, registry)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: committed_total(settings) >= until_committed, 120,
                   what="input committed")
    finally:
        worker.stop()
        thread.join(60)
    assert not thread.is_alive()
    return registry


def test_models_score_alert_snapshot_and_resume(kafka_bootstrap, test_id, tmp_path):
    snapdir = tmp_path / "models"
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state",
                          SEGSTREAM_MODELS_ENABLED="true",
                          SEGSTREAM_MODEL_SNAPSHOT_DIR=str(snapdir),
                          SEGSTREAM_CHURN_HORIZON_DAYS="14")
    now = int(time.time() * 1000)
    events = list(generate(300, 20_000, seed=5, end_ms=now - 10 * 86_400_000,
                           days=90).events())
    later = [e for e in generate(300, 8_000, seed=6, end_ms=now - 60_000, days=9).events()][:3_000]
    topic = {"click": s.topics.clicks, "order": s.topics.orders, "review": s.topics.reviews}
    produce(s, [(topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in events])
    reg = _run(s, len(events))

    found = load_newest_valid(snapdir)
    assert found is not None, "a snapshot is written at shutdown"
    suite, meta = found
    assert sum(meta["offsets"].values()) == len(events)
    assert suite.learned["churn"] > 0
    assert reg.get_sample_value("segstream_model_learned_total", {"model": "churn"}) > 0
    version1 = suite.model_version

    produce(s, [(topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in later])
    _run(s, len(events) + len(later))
    suite2, _ = load_newest_valid(snapdir)
    assert suite2.learned["churn"] > suite.learned["churn"], "the restart continued learning"

    changes = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    assert changes and all(c["model_version"] for c in changes)
    # the restarted worker scored with the snapshot it loaded, not with fresh models
    assert version1 in {c["model_version"] for c in changes}
    scored = [c for c in changes if c["scores"]]
    assert scored and all(0.0 <= c["scores"]["churn"] <= 1.0 for c in scored)
    segments = {c["segment"] for c in changes}
    assert {"churn_risk.high", "churn_risk.medium"} & segments
    assert any(s.startswith("cluster.") for s in segments)
    alerts = [orjson.loads(m.value()) for m in read_all(s, s.topics.churn)]
    high = sum(c["segment"] == "churn_risk.high" for c in changes)
    print(f"changes {len(changes)}, churn_risk.high changes {high}, alerts {len(alerts)}")
    assert alerts, "entering the high tier raises an alert"
    assert all(a["tier"] == "high" and a["top_features"] for a in alerts)
    assert len({a["event_id"] for a in alerts}) == len(alerts)
