"""The LLM path against a real OpenAI-compatible HTTP server on 127.0.0.1.

Every scenario checks the two promises of the stage: each review yields exactly one
record that validates against the contract, and the record is the LLM's answer when
the endpoint eventually gives a valid one, the local analysis (with the reason) when not.
"""

from __future__ import annotations

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from models.text.local import LocalAnalyzer
from models.text.prompts import load_prompt
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import ReviewEvent
from streams.enrich.breaker import CircuitBreaker
from streams.enrich.budget import TokenBudget, estimate_tokens
from streams.enrich.config import EnrichConfig
from streams.enrich.enricher import Enricher
from streams.enrich.llm import LLMClient, make_openai_client
from streams.metrics import EnrichMetrics
from tests.streams.enrich.fake_llm import FakeLLM

TEXTS = ["送餐太慢了，等了两个小时", "味道很好，下次还来", "Arrived fast, great quality",
         "Shipping was slow and the box was bad"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def local() -> LocalAnalyzer:
    return LocalAnalyzer.default()


@pytest.fixture
def server():
    s = FakeLLM()
    yield s
    s.close()


def make(server: FakeLLM, local: LocalAnalyzer, clock: Clock | None = None,
         sleeps: list[float] | None = None, **env: str):
    cfg = EnrichConfig.from_env({"SEGSTREAM_LLM_MODEL": "test-model",
                                 "SEGSTREAM_LLM_BASE_URL": server.base_url,
                                 "SEGSTREAM_LLM_TIMEOUT_S": "0.5",
                                 "SEGSTREAM_LLM_BATCH_SIZE": "2",
                                 "SEGSTREAM_LLM_CONCURRENCY": "2", **env})
    clock = clock or Clock()
    metrics = EnrichMetrics(CollectorRegistry())
    slept = sleeps if sleeps is not None else []
    llm = LLMClient(make_openai_client(cfg), cfg,
                    CircuitBreaker(cfg.breaker_failures, cfg.breaker_reset_s),
                    TokenBudget(cfg.tokens_per_hour, cfg.tokens_per_day,
                                cfg.cost_per_1k_input, cfg.cost_per_1k_output),
                    metrics, clock=clock, sleep=slept.append)
    return Enricher(llm, local, cfg, metrics, clock=clock), metrics


def reviews(texts=TEXTS, start=0):
    return [(ReviewEvent(event_id=f"r{start + i}", user_id=f"u{i % 2}",
                         ts=1_767_225_600_000 + i, schema_version=1, rating=3, text=t),
             None) for i, t in enumerate(texts)]


def value(metrics: EnrichMetrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels or None)
    return v or 0.0


def check_one_per_review(records, sent) -> None:
    assert [r.event_id for r in records] == [ev.event_id for ev, _ in sent]
    for r in records:  # every record survives the wire format
        assert msgspec.json.decode(msgspec.json.encode(r), type=EnrichedReview) == r


def test_good_answers_are_used_and_cached(server, local):
    enricher, metrics = make(server, local)
    batch = reviews()
    out = enricher.enrich(batch)
    check_one_per_review(out, batch)
    assert {r.source for r in out} == {"llm"} and all(r.fallback is None for r in out)
    assert out[0].analysis.aspect_polarity("logistics") == -1
    assert out[0].prompt_version == "review-analysis.v1" and out[0].model == "test-model"
    assert len(server.requests) == 2  # 4 reviews, batches of 2
    # the same texts again: answered from the cache, no request
    again = enricher.enrich(reviews(start=10))
    assert [r.analysis for r in again] == [r.analysis for r in out]
    assert len(server.requests) == 2
    assert value(metrics, "segstream_llm_cache_total", result="hit") == 4
    assert value(metrics, "segstream_llm_tokens_total", direction="prompt") == 400
    enricher.close()


def test_identical_texts_in_a_batch_are_sent_once(server, local):
    enricher, _ = make(server, local)
    out = enricher.enrich(reviews([TEXTS[0]] * 5))
    assert len(out) == 5 and {r.source for r in out} == {"llm"}
    assert server.reviews_sent() == [TEXTS[0]]
    enricher.close()


def test_malformed_json_is_retried_once_then_used(server, local):
    server.script.extend(["malformed"])
    enricher, metrics = make(server, local, SEGSTREAM_LLM_BATCH_SIZE="4",
                             SEGSTREAM_LLM_CONCURRENCY="1")
    out = enricher.enrich(reviews())
    assert {r.source for r in out} == {"llm"}
    assert len(server.requests) == 2
    assert "invalid" in server.requests[1]["messages"][-1]["content"]
    assert value(metrics, "segstream_llm_requests_total", outcome="invalid") == 1
    enricher.close()


def test_invalid_twice_falls_back_to_local_and_is_counted(server, local):
    server.script.extend(["bad_label", "malformed"])
    enricher, metrics = make(server, local, SEGSTREAM_LLM_BATCH_SIZE="4",
                             SEGSTREAM_LLM_CONCURRENCY="1")
    batch = reviews()
    out = enricher.enrich(batch)
    check_one_per_review(out, batch)
    assert {(r.source, r.fallback) for r in out} == {("local", "invalid")}
    assert out[0].analysis == local.analyze(TEXTS[0])
    assert value(metrics, "segstream_llm_fallbacks_total", reason="invalid") == 4
    # the failure is cached briefly: not re-sent at once, re-sent after the error ttl
    n = len(server.requests)
    assert {r.fallback for r in enricher.enrich(reviews(start=10))} == {"invalid"}
    assert len(server.requests) == n
    enricher.llm.clock.t += 61  # type: ignore[attr-defined]
    assert {r.source for r in enricher.enrich(reviews(start=20))} == {"llm"}
    enricher.close()


def test_only_the_invalid_reviews_are_asked_again(server, local):
    server.script.extend(["drop_one"])
    enricher, _ = make(server, local, SEGSTREAM_LLM_BATCH_SIZE="4",
                       SEGSTREAM_LLM_CONCURRENCY="1")
    out = enricher.enrich(reviews())
    assert {r.source for r in out} == {"llm"}
    second = server.requests[1]["messages"][1]["content"]
    assert TEXTS[0] in second and TEXTS[1] not in second
    enricher.close()


def test_429_and_500_are_retried_with_backoff(server, local):
    server.script.extend([("status", 429, 3), ("status", 500), ("status", 503)])
    sleeps: list[float] = []
    enricher, metrics = make(server, local, sleeps=sleeps, SEGSTREAM_LLM_BATCH_SIZE="4",
                             SEGSTREAM_LLM_CONCURRENCY="1", SEGSTREAM_LLM_BACKOFF_S="0.5")
    out = enricher.enrich(reviews())
    assert {r.source for r in out} == {"llm"}
    assert server.statuses == [429, 500, 503, 200]
    assert sleeps == [3.0, 1.0, 2.0]  # Retry-After honoured, then exponential
    assert value(metrics, "segstream_llm_errors_total", kind="rate_limited") == 1
    assert value(metrics, "segstream_llm_errors_total", kind="server_error") == 2
    enricher.close()


def test_persistent_500s_fall_back_and_open_the_breaker(server, local):
    server.default = ("status", 500)
    clock = Clock()
    enricher, metrics = make(server, local, clock=clock, SEGSTREAM_LLM_MAX_RETRIES="1",
                             SEGSTREAM_LLM_BREAKER_FAILURES="2", SEGSTREAM_LLM_BATCH_SIZE="1",
                             SEGSTREAM_LLM_CONCURRENCY="1", SEGSTREAM_LLM_BREAKER_RESET_S="30")
    batch = reviews()
    out = enricher.enrich(batch)
    check_one_per_review(out, batch)
    reasons = [r.fallback for r in out]
    assert reasons == ["server_error", "server_error", "breaker_open", "breaker_open"]
    assert len(server.requests) == 4  # two batches x (1 try + 1 retry), then no calls
    assert value(metrics, "segstream_llm_breaker_state") == 2
    # endpoint back: after the reset time one trial closes the circuit
    server.default = "good"
    clock.t += 31
    out = enricher.enrich(reviews(["new text one", "new text two"], start=10))
    assert {r.source for r in out} == {"llm"}
    assert value(metrics, "segstream_llm_breaker_state") == 0
    enricher.close()


def test_timeouts_are_retried_then_fall_back(server, local):
    server.default = ("sleep", 2.0)
    enricher, metrics = make(server, local, SEGSTREAM_LLM_TIMEOUT_S="0.3",
                             SEGSTREAM_LLM_MAX_RETRIES="1", SEGSTREAM_LLM_BATCH_SIZE="4",
                             SEGSTREAM_LLM_CONCURRENCY="1")
    batch = reviews()
    out = enricher.enrich(batch)
    check_one_per_review(out, batch)
    assert {(r.source, r.fallback) for r in out} == {("local", "timeout")}
    assert value(metrics, "segstream_llm_errors_total", kind="timeout") == 2
    enricher.close()


def test_a_slow_answer_within_the_timeout_is_used(server, local):
    server.script.append(("sleep", 0.1))
    enricher, _ = make(server, local, SEGSTREAM_LLM_TIMEOUT_S="2")
    assert {r.source for r in enricher.enrich(reviews())} == {"llm"}
    enricher.close()


def test_exhausted_budget_falls_back_without_calling(server, local):
    clock = Clock()
    # room for the first request's estimate only (the fake then reports 150 tokens used)
    first = estimate_tokens([TEXTS[0]], len(load_prompt("review-analysis").text))
    enricher, metrics = make(server, local, clock=clock,
                             SEGSTREAM_LLM_TOKENS_PER_HOUR=str(first + 100),
                             SEGSTREAM_LLM_BATCH_SIZE="1", SEGSTREAM_LLM_CONCURRENCY="1",
                             SEGSTREAM_LLM_COST_PER_1K_INPUT="1.0")
    out = enricher.enrich(reviews())
    assert [r.source for r in out] == ["llm", "local", "local", "local"]
    assert {r.fallback for r in out[1:]} == {"budget"}
    assert len(server.requests) == 1
    assert value(metrics, "segstream_llm_cost_total") == pytest.approx(0.1)
    clock.t += 3600  # next hour: budget again (budget failures are not cached)
    assert enricher.enrich(reviews(start=10))[1].source == "llm"
    enricher.close()


def test_unreachable_endpoint_falls_back(local):
    cfg = EnrichConfig.from_env({"SEGSTREAM_LLM_MODEL": "m",
                                 "SEGSTREAM_LLM_BASE_URL": "http://127.0.0.1:9/v1",
                                 "SEGSTREAM_LLM_MAX_RETRIES": "0"})
    llm = LLMClient(make_openai_client(cfg), cfg, CircuitBreaker(5, 30), TokenBudget(0, 0))
    enricher = Enricher(llm, local, cfg)
    out = enricher.enrich(reviews())
    assert {(r.source, r.fallback) for r in out} == {("local", "connection")}
    enricher.close()


def test_empty_text_gets_a_local_record_without_a_request(server, local):
    enricher, _ = make(server, local)
    out = enricher.enrich(reviews(["  ", TEXTS[1]]))
    assert [(r.source, r.fallback) for r in out] == [("local", "no_text"), ("llm", None)]
    assert server.reviews_sent() == [TEXTS[1]]
    enricher.close()
