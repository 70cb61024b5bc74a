"""The enrichment stage on the real broker, against a faulty local LLM endpoint.

Promises checked: one enriched record per valid review (LLM answer or local fallback),
on the review's partition number and keyed by its user; undecodable reviews in the DLQ
with the worker's headers; input offsets committed only once the outputs are
acknowledged, so a failed delivery loses nothing.
"""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import CollectorRegistry

from streams.contracts.decode import decode_enriched
from streams.enrich.config import EnrichConfig
from streams.enrich.stage import build_stage, ensure_enriched_topic
from streams.exceptions import DeliveryError
from streams.kafka.clients import admin
from streams.kafka.dlq import parse_headers
from streams.metrics import EnrichMetrics
from tests.integration.kafka_helpers import end_offsets, isolated_settings, produce, read_all
from tests.streams.enrich.fake_llm import FakeLLM

pytestmark = pytest.mark.integration

TEXTS = ["送餐太慢了，等了两个小时", "味道很好，下次还来", "Arrived fast, great quality",
         "Shipping was slow and the box was bad", "包装很好，性价比高", "Rude seller, slow refund"]


def review(i: int) -> dict:
    return {"type": "review", "event_id": f"r{i:03d}", "user_id": f"u{i % 7}",
            "ts": 1_767_225_600_000 + i * 1000, "schema_version": 1, "rating": 1 + i % 5,
            "text": TEXTS[i % len(TEXTS)] + f" #{i}", "order_id": f"o{i}"}


def setup(kafka_bootstrap: str, test_id: str, tmp_path, server: FakeLLM, n: int = 40):
    settings = isolated_settings(kafka_bootstrap, test_id, tmp_path)
    config = EnrichConfig.from_env({
        "SEGSTREAM_LLM_MODEL": "test-model", "SEGSTREAM_LLM_BASE_URL": server.base_url,
        "SEGSTREAM_TOPIC_ENRICHED": f"{test_id}.enriched",
        "SEGSTREAM_ENRICH_GROUP_ID": f"{test_id}-enrich", "SEGSTREAM_LLM_BATCH_SIZE": "4",
        "SEGSTREAM_LLM_CONCURRENCY": "2", "SEGSTREAM_LLM_TIMEOUT_S": "0.5",
        "SEGSTREAM_LLM_MAX_RETRIES": "1", "SEGSTREAM_LLM_BACKOFF_S": "0.01",
        "SEGSTREAM_ENRICH_POLL_BATCH": "16"})
    assert ensure_enriched_topic(settings, config, admin(settings)) == settings.partitions
    records = [(settings.topics.reviews, *reversed_kv(review(i))) for i in range(n)]
    records.append((settings.topics.reviews, b"u1", b"{not json"))
    records.append((settings.topics.reviews, b"someone-else", orjson.dumps(review(999))))
    where = produce(settings, records)
    return settings, config, where


def reversed_kv(ev: dict) -> tuple[bytes, bytes]:
    return ev["user_id"].encode(), orjson.dumps(ev)


def committed(settings, group: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                  "enable.auto.commit": False})
    tps = [TopicPartition(settings.topics.reviews, p) for p in range(settings.partitions)]
    out = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
    c.close()
    return out


def assert_committed_to_end(settings, group: str) -> None:
    ends = end_offsets(settings, settings.topics.reviews)
    got = committed(settings, group)
    assert {p: got[p] for p in ends if ends[p]} == {p: o for p, o in ends.items() if o}


def test_every_review_is_enriched_once_despite_endpoint_faults(kafka_bootstrap, test_id,
                                                               tmp_path):
    server = FakeLLM()
    server.script.extend([("status", 429), ("status", 500), "malformed", ("sleep", 1.5),
                          ("sleep", 1.5), "bad_label", "bad_label", ("status", 503)])
    try:
        settings, config, _ = setup(kafka_bootstrap, test_id, tmp_path, server)
        metrics = EnrichMetrics(CollectorRegistry())
        stage = build_stage(settings, config, metrics)
        stage.run(idle_exit_s=8)
    finally:
        server.close()

    out = read_all(settings, config.topic_enriched)
    recs = [decode_enriched(m.key(), m.value(), 1_000_000) for m in out]
    ids = [r.event_id for r in recs]
    assert sorted(ids) == [f"r{i:03d}" for i in range(40)]  # each valid review exactly once
    sources = {r.source for r in recs}
    assert "llm" in sources
    assert all(r.fallback for r in recs if r.source == "local")
    assert all(r.prompt_version == "review-analysis.v1" for r in recs)
    for m, r in zip(out, recs, strict=True):  # co-partitioned with the review
        assert r.origin is not None and m.partition() == r.origin.partition
        assert m.key() == r.user_id.encode()
    # the two bad messages went to the DLQ with the worker's headers
    dlq = [parse_headers(m.headers()) for m in read_all(settings, settings.topics.dlq)]
    assert sorted(h["dlq.reason"] for h in dlq) == ["key_mismatch", "malformed_json"]
    assert {h["dlq.worker"] for h in dlq} == {"enrich"}
    # offsets committed up to the end, after the outputs
    assert_committed_to_end(settings, config.group_id)
    reg = metrics.registry
    assert reg.get_sample_value("segstream_enrich_dlq_total", {"reason": "malformed_json"}) == 1
    assert reg.get_sample_value("segstream_llm_errors_total", {"kind": "rate_limited"}) == 1


class _NackEnriched:
    """A real producer whose acknowledgements for the enriched topic report a timeout."""

    def __init__(self, producer, topic: str) -> None:
        self._p = producer
        self._topic = topic

    def produce(self, topic, **kwargs):
        if topic == self._topic:
            real = kwargs["on_delivery"]
            kwargs["on_delivery"] = lambda err, msg: real(
                KafkaError(KafkaError._MSG_TIMED_OUT), msg)
        self._p.produce(topic, **kwargs)

    def __getattr__(self, name):
        return getattr(self._p, name)


def test_offsets_are_not_committed_when_outputs_are_not_acknowledged(kafka_bootstrap, test_id,
                                                                     tmp_path):
    from confluent_kafka import Producer

    server = FakeLLM()
    try:
        settings, config, _ = setup(kafka_bootstrap, test_id, tmp_path, server, n=10)
        failing = build_stage(settings, config, producer_factory=lambda conf: _NackEnriched(
            Producer(conf), config.topic_enriched))
        with pytest.raises(DeliveryError):
            failing.run(idle_exit_s=8)
        assert all(o < 0 for o in committed(settings, config.group_id).values())
        # a restarted stage re-reads the batch: nothing is lost
        build_stage(settings, config).run(idle_exit_s=8)
    finally:
        server.close()
    recs = [decode_enriched(m.key(), m.value(), 1_000_000)
            for m in read_all(settings, config.topic_enriched)]
    assert {r.event_id for r in recs} == {f"r{i:03d}" for i in range(10)}
    assert_committed_to_end(settings, config.group_id)
