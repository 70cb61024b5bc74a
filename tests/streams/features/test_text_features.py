"""Review-text features: local analyses, LLM replacements in any order, windows, and
old stored states."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from models.text.result import Analysis, AspectMention
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import OrderEvent, ReviewEvent
from streams.features.state import (
    DAY_MS,
    HOUR_MS,
    SOURCE_LLM,
    T_SOURCE,
    UserState,
    decode_state,
    encode_state,
)
from streams.features.update import FeatureConfig, apply_enrichment, update
from streams.features.vector import FEATURE_DOCS, FEATURE_NAMES, TEXT_FEATURE_NAMES, vector

T0 = 1_750_000_000_000 // HOUR_MS * HOUR_MS


def analysis(score: float, **aspects: str) -> Analysis:
    label = "positive" if score >= 0.2 else "negative" if score <= -0.2 else "neutral"
    return Analysis(lang="en", sentiment=score, label=label,  # type: ignore[arg-type]
                    aspects=[AspectMention(aspect=a, polarity=p)  # type: ignore[arg-type]
                             for a, p in aspects.items()])


def review(rid: str, ts: int, rating: int = 3) -> ReviewEvent:
    return ReviewEvent(event_id=rid, user_id="u", ts=ts, schema_version=1, rating=rating,
                       text="t")


def purchase(oid: str, ts: int, total: float = 200.0) -> OrderEvent:
    return OrderEvent(event_id=f"o{oid}", user_id="u", ts=ts, schema_version=1, order_id=oid,
                      status="paid", total=total, currency="EUR")


def llm(rid: str, ts: int, a: Analysis, source: str = "llm") -> EnrichedReview:
    return EnrichedReview(event_id=rid, user_id="u", ts=ts, source=source,  # type: ignore[arg-type]
                          analysis=a)


def test_every_feature_is_documented_and_text_features_are_listed():
    assert set(FEATURE_DOCS) == set(FEATURE_NAMES)
    assert set(TEXT_FEATURE_NAMES) <= set(FEATURE_NAMES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_text_features_from_local_analyses():
    s = update(None, purchase("o1", T0))
    s = update(s, review("r1", T0 + DAY_MS), analysis=analysis(-0.8, logistics="negative",
                                                               price="negative"))
    s = update(s, review("r2", T0 + 2 * DAY_MS), analysis=analysis(0.6, quality="positive"))
    s = update(s, review("r3", T0 + 3 * DAY_MS), analysis=analysis(0.0, price="neutral"))
    v = vector(s)
    assert v["text_reviews_90d"] == 3.0
    assert v["sentiment_90d"] == pytest.approx((-0.8 + 0.6 + 0.0) / 3)
    assert v["negative_review_share_90d"] == pytest.approx(1 / 3)
    assert v["complaints_90d"] == 1.0
    assert v["price_mention_share_90d"] == pytest.approx(2 / 3)
    assert v["price_polarity_90d"] == pytest.approx(-0.5)
    assert v["price_complaints_90d"] == 1.0
    assert v["quality_praise_90d"] == 1.0 and v["quality_polarity_90d"] == 1.0
    assert v["service_mention_share_90d"] == 0.0 and v["service_polarity_90d"] is None
    assert v["logistics_complaints_after_order_14d"] == 1.0
    # two weeks later the delivery complaint is no longer recent; after 90 days all is gone
    assert vector(s, T0 + 16 * DAY_MS)["logistics_complaints_after_order_14d"] == 0.0
    later = vector(s, T0 + 95 * DAY_MS)
    assert later["text_reviews_90d"] == 0.0 and later["sentiment_90d"] is None


def test_delivery_complaint_without_a_recent_purchase_is_not_after_an_order():
    s = update(None, purchase("o1", T0))
    s = update(s, review("r1", T0 + 40 * DAY_MS), analysis=analysis(-0.8, logistics="negative"))
    assert vector(s)["logistics_complaints_after_order_14d"] == 0.0
    assert vector(s)["logistics_complaints_90d"] == 1.0


def test_reviews_without_analysis_leave_text_features_empty():
    v = vector(update(None, review("r1", T0)))
    assert v["reviews_365d"] == 1.0 and v["text_reviews_90d"] == 0.0


def test_llm_result_replaces_the_local_one_in_either_order():
    local, better = analysis(0.5), analysis(-0.9, service="negative")
    ev = review("r1", T0)
    after = apply_enrichment(update(None, ev, analysis=local), llm("r1", T0, better))
    before = update(apply_enrichment(None, llm("r1", T0, better)), ev, analysis=local)
    assert after is not None
    assert after.texts == before.texts
    assert after.texts["r1"][T_SOURCE] == SOURCE_LLM
    assert vector(after)["service_complaints_90d"] == 1.0
    # applying it twice changes nothing (outputs are at-least-once)
    again = apply_enrichment(decode_state(encode_state(after)), llm("r1", T0, better))
    assert again is not None and again.texts == after.texts


def test_local_fallback_records_change_nothing():
    s = update(None, review("r1", T0), analysis=analysis(0.5))
    before = dict(s.texts)
    assert apply_enrichment(s, llm("r1", T0, analysis(-0.5), source="local")) is s
    assert s.texts == before


def test_any_arrival_order_of_reviews_and_enrichments_gives_the_same_features():
    steps = [("review", "r1", T0, analysis(0.4)), ("review", "r2", T0 + HOUR_MS,
                                                    analysis(-0.3, price="negative")),
             ("llm", "r1", T0, analysis(-0.7, quality="negative")),
             ("order", "o1", T0 - DAY_MS, None)]
    results = []
    for perm in itertools.permutations(steps):
        s = None
        for kind, rid, ts, a in perm:
            if kind == "review":
                s = update(s, review(rid, ts), analysis=a)
            elif kind == "llm":
                s = apply_enrichment(s, llm(rid, ts, a))
            else:
                s = update(s, purchase(rid, ts))
        assert s is not None
        results.append(vector(s, T0 + 2 * HOUR_MS))
    assert all(r == results[0] for r in results)


def test_text_records_are_bounded_and_pruned():
    cfg = FeatureConfig(max_reviews=5)
    s = None
    for i in range(12):
        s = update(s, review(f"r{i}", T0 + i * HOUR_MS), cfg, analysis=analysis(0.5))
    assert s is not None and set(s.texts) == {f"r{i}" for i in range(7, 12)}
    s = update(s, review("late", T0 + 200 * DAY_MS), cfg, analysis=analysis(0.5))
    assert list(s.texts) == ["late"]


def test_states_stored_before_text_features_still_decode():
    class OldState(msgspec.Struct, kw_only=True, omit_defaults=True):
        v: int = 1
        first_ts: int = 0
        last_ts: int = 0
        reviews: list[list[int]] = []
        reviews_lifetime: int = 0
        segments: dict[str, list[int]] = {}
        exited: dict[str, int] = {}

    old = msgspec.msgpack.encode(OldState(first_ts=T0, last_ts=T0, reviews=[[T0, 4]],
                                          reviews_lifetime=1, segments={"vip": [T0, T0]}))
    s = decode_state(old)
    assert s.texts == {} and s.segments == {"vip": [T0, T0]}
    assert vector(s)["text_reviews_90d"] == 0.0
    assert isinstance(s, UserState)
