"""The default policy's text-driven segments, from real feature vectors."""

from __future__ import annotations

from models.segments.policy import SegmentPolicy
from models.text.result import Analysis, AspectMention
from streams.contracts.events import OrderEvent, ReviewEvent
from streams.features.state import DAY_MS, HOUR_MS
from streams.features.update import update
from streams.features.vector import FEATURE_NAMES, vector

T0 = 1_750_000_000_000 // HOUR_MS * HOUR_MS


def purchase(oid: str, ts: int, total: float) -> OrderEvent:
    return OrderEvent(event_id=f"e{oid}", user_id="u", ts=ts, schema_version=1, order_id=oid,
                      status="paid", total=total, currency="EUR")


def reviewed(state, rid: str, ts: int, score: float, aspect: str, polarity: str):
    label = "positive" if score > 0 else "negative"
    a = Analysis(lang="zh", sentiment=score, label=label,  # type: ignore[arg-type]
                 aspects=[AspectMention(aspect=aspect, polarity=polarity)])  # type: ignore[arg-type]
    ev = ReviewEvent(event_id=rid, user_id="u", ts=ts, schema_version=1, rating=3, text="x")
    return update(state, ev, analysis=a)


def run(policy: SegmentPolicy, state, as_of: int) -> dict[str, str]:
    changes = policy.evaluate(state.segments, state.exited, vector(state, as_of), as_of)
    return {c.segment: c.change for c in changes}


def test_policy_version_was_bumped_for_the_text_segments():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    assert p.version == "default-2026.12.2"
    assert {"quality_seeking", "service_recovery"} <= {r.name for r in p.rules}


def test_quality_praise_with_high_order_values_is_quality_seeking():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    s = update(update(None, purchase("o1", T0, 180.0)), purchase("o2", T0 + DAY_MS, 220.0))
    assert "quality_seeking" not in run(p, s, s.last_ts)
    s = reviewed(s, "r1", T0 + 3 * DAY_MS, 0.9, "quality", "positive")
    assert run(p, s, s.last_ts).get("quality_seeking") == "entered"


def test_quality_praise_with_small_baskets_is_not():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    s = update(None, purchase("o1", T0, 20.0))
    s = reviewed(s, "r1", T0 + DAY_MS, 0.9, "quality", "positive")
    assert "quality_seeking" not in run(p, s, s.last_ts)


def test_delivery_complaint_after_an_order_triggers_service_recovery_then_clears():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    s = update(None, purchase("o1", T0, 50.0))
    s = reviewed(s, "r1", T0 + 2 * DAY_MS, -0.8, "logistics", "negative")
    assert run(p, s, s.last_ts).get("service_recovery") == "entered"
    assert run(p, s, s.last_ts + 20 * DAY_MS).get("service_recovery") == "exited"


def test_price_complaints_of_a_repeat_buyer_feed_price_sensitive():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    s = update(update(None, purchase("o1", T0, 50.0)), purchase("o2", T0 + DAY_MS, 60.0))
    assert "price_sensitive" not in run(p, s, s.last_ts)
    s = reviewed(s, "r1", T0 + 2 * DAY_MS, -0.6, "price", "negative")
    [ch] = [c for c in p.evaluate(s.segments, s.exited, vector(s), s.last_ts)
            if c.segment == "price_sensitive"]
    assert ch.change == "entered"
    assert "price_complaints_90d" in {r.feature for r in ch.reasons}
