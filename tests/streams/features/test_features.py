"""Feature logic: window arithmetic, RFM, carts, and order independence within lateness."""

from __future__ import annotations

import random

import pytest

from streams.contracts.events import ClickEvent, OrderEvent, ReviewEvent
from streams.features.state import DAY_MS, HOUR_MS, MINUTE_MS, decode_state, encode_state
from streams.features.update import DEFAULT_CONFIG, FeatureConfig, update
from streams.features.vector import FEATURE_NAMES, vector

T0 = 1_750_000_000_000 // HOUR_MS * HOUR_MS  # an hour boundary


def click(ts, action="view", session="s1", category="shoes", eid=None):
    return ClickEvent(event_id=eid or f"c{ts}{action}{session}", user_id="u", ts=ts,
                      schema_version=1, session_id=session, action=action, category=category)


def order(ts, oid, status="placed", total=100.0, discount=0.0, coupon=None, pay="card"):
    return OrderEvent(event_id=f"o{oid}{status}", user_id="u", ts=ts, schema_version=1,
                      order_id=oid, status=status, total=total, currency="EUR",
                      discount=discount, coupon_code=coupon, payment_method=pay)


def review(ts, rating):
    return ReviewEvent(event_id=f"r{ts}", user_id="u", ts=ts, schema_version=1, rating=rating)


def fold(events, config=DEFAULT_CONFIG):
    state = None
    for ev in events:
        state = update(state, ev, config)
    return state


def test_vector_has_every_documented_feature():
    v = vector(fold([click(T0)]))
    assert set(v) == set(FEATURE_NAMES)


def test_click_windows_count_trailing_events():
    now = T0 + 40 * DAY_MS
    events = [
        click(now - 40 * DAY_MS),          # outside every window
        click(now - 20 * DAY_MS),          # 30d
        click(now - 3 * DAY_MS),           # 7d, 30d
        click(now - 5 * HOUR_MS),          # 24h, 7d, 30d
        click(now - 10 * MINUTE_MS),       # all
        click(now),                        # all
    ]
    v = vector(fold(events))
    assert (v["clicks_1h"], v["clicks_24h"], v["clicks_7d"], v["clicks_30d"]) == (2, 3, 4, 5)


def test_sessions_carts_and_categories():
    day = DAY_MS
    events = [
        click(T0, "view", "a", "shoes"),
        click(T0 + MINUTE_MS, "add_to_cart", "a", "shoes"),
        order(T0 + 30 * MINUTE_MS, "o1"),                       # cart a converted
        click(T0 + 2 * day, "view", "b", "hats"),
        click(T0 + 2 * day + MINUTE_MS, "add_to_cart", "b", "hats"),   # cart b abandoned
        click(T0 + 4 * day, "view", "c", "bags"),
        click(T0 + 4 * day + 5 * MINUTE_MS, "view", "c", "bags"),
    ]
    v = vector(fold(events))
    assert v["sessions_30d"] == 3 and v["sessions_24h"] == 1
    assert v["views_30d"] == 4 and v["add_to_cart_30d"] == 2
    assert v["add_to_cart_rate_30d"] == 0.5
    assert v["carts_30d"] == 2 and v["cart_abandonment_rate_30d"] == 0.5
    assert v["distinct_categories_30d"] == 3
    assert v["avg_session_clicks_30d"] == pytest.approx(7 / 3 - 1 / 3)  # 2 clicks each


def test_rfm_coupons_cancellations_and_payment_mix():
    now = T0 + 400 * DAY_MS
    events = [
        order(now - 380 * DAY_MS, "old", total=999),                       # outside 365d
        order(now - 200 * DAY_MS, "a", total=100, discount=25, coupon="X", pay="paypal"),
        order(now - 60 * DAY_MS, "b", total=300, pay="card"),
        order(now - 60 * DAY_MS + HOUR_MS, "b", status="paid", total=300, pay="card"),
        order(now - 10 * DAY_MS, "c", total=50, pay="crypto"),
        order(now - 10 * DAY_MS + HOUR_MS, "c", status="refunded", total=50, pay=None),
        order(now - 5 * DAY_MS, "d", total=80),
        order(now - 5 * DAY_MS + MINUTE_MS, "d", status="cancelled", total=80),
        click(now),
    ]
    v = vector(fold(events))
    assert v["orders_365d"] == 3 and v["orders_90d"] == 2 and v["orders_30d"] == 1
    # net spend: a + b + c - refund(c); cancelled d counts nothing
    assert v["spend_365d"] == 400 and v["spend_30d"] == 0
    assert v["aov_365d"] == pytest.approx(400 / 3, abs=0.01)
    assert v["cancel_rate_365d"] == 0.25
    assert v["refund_rate_365d"] == pytest.approx(1 / 3)
    assert v["coupon_share_365d"] == pytest.approx(1 / 3)
    assert v["avg_discount_365d"] == pytest.approx((25 / 125) / 3)
    assert v["pay_share_paypal"] == pytest.approx(1 / 3)
    assert v["pay_share_other"] == pytest.approx(1 / 3)
    assert v["recency_days"] == pytest.approx(10.0)
    assert v["orders_lifetime"] == 5  # old, a, b, c, d were each placed once
    assert v["first_order_days"] == pytest.approx(380.0)


def test_reviews():
    v = vector(fold([review(T0, 5), review(T0 + DAY_MS, 2)]))
    assert v["reviews_365d"] == 2 and v["avg_rating_365d"] == 3.5


def test_undefined_features_are_none_not_zero():
    v = vector(fold([click(T0)]))
    assert v["recency_days"] is None and v["aov_365d"] is None
    assert v["cart_abandonment_rate_30d"] is None and v["avg_rating_365d"] is None


def test_state_roundtrips_through_msgpack():
    s = fold([click(T0), order(T0 + 1, "o"), review(T0 + 2, 4)])
    assert decode_state(encode_state(s)) == s


def test_old_data_is_pruned_but_windows_stay_exact():
    cfg = FeatureConfig(lateness_ms=HOUR_MS)
    events = [click(T0 + i * 6 * HOUR_MS, session=f"s{i}") for i in range(400)]  # 100 days
    s = fold(events, cfg)
    assert min(s.click_hour) >= (s.last_ts - 31 * DAY_MS) // HOUR_MS
    assert len(s.sessions) <= 4 * 32
    assert vector(s)["clicks_30d"] == 120


def _history(seed: int):
    rng = random.Random(seed)
    events = []
    ts = T0
    for i in range(300):
        ts += rng.randint(1, 6 * HOUR_MS)
        k = rng.random()
        if k < 0.75:
            events.append(click(ts, rng.choice(["view", "view", "add_to_cart", "search"]),
                                f"s{ts // (3 * HOUR_MS)}", rng.choice(["a", "b", "c"]),
                                eid=f"e{i}"))
        elif k < 0.95:
            oid = f"o{i}"
            events.append(order(ts, oid, total=rng.randint(5, 300), coupon=rng.choice([None, "C"]),
                                discount=rng.choice([0, 5])))
            events.append(order(ts + rng.randint(1, 10 * MINUTE_MS), oid,
                                status=rng.choice(["paid", "cancelled", "refunded"]),
                                total=rng.randint(5, 300)))
        else:
            events.append(review(ts, rng.randint(1, 5)))
    return sorted(events, key=lambda e: e.ts)


def _shuffle_within(events, lateness_ms, rng):
    """A permutation in which no event arrives more than ``lateness_ms`` behind the max."""
    keyed = sorted(events, key=lambda e: e.ts + rng.uniform(0, lateness_ms * 0.99))
    out, max_ts = [], 0
    for e in keyed:
        assert e.ts >= max_ts - lateness_ms
        max_ts = max(max_ts, e.ts)
        out.append(e)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_out_of_order_within_lateness_gives_the_same_features(seed):
    lateness = 6 * HOUR_MS
    cfg = FeatureConfig(lateness_ms=lateness)
    events = _history(seed)
    shuffled = _shuffle_within(events, lateness, random.Random(seed + 100))
    assert shuffled != events
    a, b = fold(events, cfg), fold(shuffled, cfg)
    assert vector(a, config=cfg) == vector(b, config=cfg)
    assert vector(a, a.last_ts + 3 * DAY_MS, cfg) == vector(b, b.last_ts + 3 * DAY_MS, cfg)
