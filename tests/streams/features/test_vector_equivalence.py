"""The optimised :func:`vector` returns exactly what the original implementation did.

``_ref_vector`` below is a frozen copy of the straightforward implementation the hot path
was optimised from. Every feature must come out identical (same keys in the same order,
same types, ``==`` values, ``None`` where undefined) after every event of simulated and
real histories, at the latest event time and at later ``as_of`` values, and after a
msgpack round trip of the state.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from pathlib import Path

import msgspec
import pytest

from models.text.local import LocalAnalyzer
from models.text.result import ASPECTS, Analysis, AspectMention, label_of
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import ClickEvent, OrderEvent, ReviewEvent
from streams.features.state import (
    DAY_MS,
    F_CANCELLED,
    F_REFUNDED,
    H_ATC,
    H_CLICKS,
    H_VIEWS,
    HOUR_MS,
    MINUTE_MS,
    O_COUPON,
    O_DISCOUNT,
    O_FIRST_TS,
    O_FLAGS,
    O_PAYMENT,
    O_TOTAL,
    S_ATC,
    S_CLICKS,
    S_FIRST_ATC,
    S_LAST,
    T_MENTIONED,
    T_NEGATIVE,
    T_POSITIVE,
    T_SCORE,
    T_TS,
    UserState,
    decode_state,
    encode_state,
)
from streams.features.update import (
    DEFAULT_CONFIG,
    PURCHASE_FLAGS,
    FeatureConfig,
    apply_enrichment,
    update,
)
from streams.features.vector import FEATURE_NAMES, vector
from streams.sim.generator import generate

RETAIL = Path("/work/shared/data/online_retail_uci.csv.gz")
EVENT_TYPES = {"click": ClickEvent, "order": OrderEvent, "review": ReviewEvent}
LATER = (1, 7, 29, 30, 31, 89, 91, 364, 366)  # days after the latest event

# ---------------------------------------------------------------------------------------
# Reference: the original implementation, copied verbatim (only names prefixed _ref).
# ---------------------------------------------------------------------------------------

Features = dict[str, float | None]

CLICK_WINDOWS = {"1h": HOUR_MS, "24h": 24 * HOUR_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
ORDER_WINDOWS = {"30d": 30 * DAY_MS, "90d": 90 * DAY_MS, "365d": 365 * DAY_MS}
PAYMENT_METHODS = ("card", "paypal", "wallet", "cod", "bank_transfer", "gift_card")
_PAY_KEYS = tuple((m, f"pay_share_{m}") for m in (*PAYMENT_METHODS, "other"))


def _ref_vector(
    state: UserState, as_of: int | None = None, config: FeatureConfig = DEFAULT_CONFIG
) -> Features:
    """Compute every feature in :data:`FEATURE_NAMES` for ``state`` at ``as_of`` (epoch ms)."""
    now = state.last_ts if as_of is None else as_of
    f: Features = {}
    _ref_clicks(state, now, f)
    _ref_orders(state, now, f, config)
    _ref_reviews(state, now, f)
    f["last_seen_days"] = (now - state.last_ts) / DAY_MS
    f["tenure_days"] = (now - state.first_ts) / DAY_MS
    _ref_text(state, now, f)
    return f


_ref_NO_CLICKS: Features = {
    **{f"clicks_{w}": 0.0 for w in CLICK_WINDOWS},
    **{f"sessions_{w}": 0.0 for w in CLICK_WINDOWS},
    "views_30d": 0.0, "add_to_cart_30d": 0.0, "add_to_cart_rate_30d": None,
    "avg_session_clicks_30d": None,
}


def _ref_clicks(state: UserState, now: int, f: Features) -> None:
    if not state.click_hour and not state.sessions:
        # Order-only users (a shop's back-office feed, the Online Retail file) skip the scan.
        f.update(_ref_NO_CLICKS)
        cat_start = now - 30 * DAY_MS
        f["distinct_categories_30d"] = float(
            sum(1 for t in state.categories.values() if cat_start < t <= now))
        return
    # Hot path: plain locals instead of per-window dicts (this runs for every event).
    lo_min = (now - HOUR_MS) // MINUTE_MS
    hi_min = now // MINUTE_MS
    f["clicks_1h"] = float(sum(c for m, c in state.click_min.items() if lo_min < m <= hi_min))
    hi_h = now // HOUR_MS
    lo24, lo7, lo30 = ((now - 24 * HOUR_MS) // HOUR_MS, (now - 7 * DAY_MS) // HOUR_MS,
                       (now - 30 * DAY_MS) // HOUR_MS)
    c24 = c7 = c30 = views = atc = 0
    for h, rec in state.click_hour.items():
        if h > hi_h or h <= lo30:
            continue
        n = rec[H_CLICKS]
        c30 += n
        views += rec[H_VIEWS]
        atc += rec[H_ATC]
        if h > lo7:
            c7 += n
            if h > lo24:
                c24 += n
    f["clicks_24h"], f["clicks_7d"], f["clicks_30d"] = float(c24), float(c7), float(c30)
    f["views_30d"] = float(views)
    f["add_to_cart_30d"] = float(atc)
    f["add_to_cart_rate_30d"] = atc / views if views else None

    t1, t24, t7, t30 = now - HOUR_MS, now - 24 * HOUR_MS, now - 7 * DAY_MS, now - 30 * DAY_MS
    n1 = n24 = n7 = n30 = clicks_30 = 0
    for sess in state.sessions.values():
        last = sess[S_LAST]
        if last > now or last <= t30:
            continue
        n30 += 1
        clicks_30 += sess[S_CLICKS]
        if last > t7:
            n7 += 1
            if last > t24:
                n24 += 1
                if last > t1:
                    n1 += 1
    f["sessions_1h"], f["sessions_24h"] = float(n1), float(n24)
    f["sessions_7d"], f["sessions_30d"] = float(n7), float(n30)
    f["avg_session_clicks_30d"] = clicks_30 / n30 if n30 else None
    f["distinct_categories_30d"] = float(
        sum(1 for t in state.categories.values() if t30 < t <= now)
    )


def _ref_orders(state: UserState, now: int, f: Features, config: FeatureConfig) -> None:
    # One pass with local accumulators: heavy buyers hold hundreds of orders and this
    # runs for every event, so the loop avoids per-order dict lookups.
    s30, s90, s365 = now - 30 * DAY_MS, now - 90 * DAY_MS, now - 365 * DAY_MS
    n30 = n90 = n365 = 0
    sp30 = sp90 = sp365 = 0.0
    cancelled = refunded = coupons = 0
    discount_share = 0.0
    pay: dict[str, int] = {}
    purchase_times: list[int] = []
    last_order = 0
    for o in state.orders.values():
        t = o[O_FIRST_TS]
        if t > now:
            continue
        flags = o[O_FLAGS]
        is_purchase = bool(flags & PURCHASE_FLAGS) and not flags & F_CANCELLED
        if is_purchase:
            purchase_times.append(t)
            if t > last_order:
                last_order = t
        if t <= s365:
            continue
        total = o[O_TOTAL]
        # Net spend: purchases add their total, refunds take theirs back.
        amount = (total if is_purchase else 0.0) - (total if flags & F_REFUNDED else 0.0)
        sp365 += amount
        if t > s90:
            sp90 += amount
            if t > s30:
                sp30 += amount
        if flags & F_CANCELLED:
            cancelled += 1
        if flags & F_REFUNDED:
            refunded += 1
        if is_purchase:
            n365 += 1
            if t > s90:
                n90 += 1
                if t > s30:
                    n30 += 1
            coupons += o[O_COUPON]
            disc = o[O_DISCOUNT]
            if disc:
                discount_share += disc / (total + disc)
            method = o[O_PAYMENT] if o[O_PAYMENT] in PAYMENT_METHODS else "other"
            pay[method] = pay.get(method, 0) + 1
    f["orders_30d"], f["orders_90d"], f["orders_365d"] = float(n30), float(n90), float(n365)
    f["spend_30d"], f["spend_90d"] = round(sp30, 2), round(sp90, 2)
    f["spend_365d"] = round(sp365, 2)
    attempts = n365 + cancelled
    f["aov_365d"] = round(sp365 / n365, 2) if n365 else None
    f["cancel_rate_365d"] = cancelled / attempts if attempts else None
    f["refund_rate_365d"] = min(1.0, refunded / n365) if n365 else None
    f["coupon_share_365d"] = coupons / n365 if n365 else None
    f["avg_discount_365d"] = discount_share / n365 if n365 else None
    for m in _PAY_KEYS:
        f[m[1]] = pay.get(m[0], 0) / n365 if n365 else None
    f["orders_lifetime"] = float(state.orders_lifetime)
    f["recency_days"] = (now - last_order) / DAY_MS if last_order else None
    f["first_order_days"] = (
        (now - state.first_order_ts) / DAY_MS if state.first_order_ts else None
    )
    purchase_times.sort()
    _ref_carts(state, now, f, purchase_times, config)


def _ref_carts(
    state: UserState, now: int, f: Features, purchases: list[int], config: FeatureConfig
) -> None:
    """Carts whose conversion window has closed, and the share that never became an order."""
    conv = config.cart_conversion_ms
    start = now - 30 * DAY_MS
    carts = abandoned = 0
    for s in state.sessions.values():
        if not s[S_ATC]:
            continue
        first_atc = s[S_FIRST_ATC]
        deadline = s[S_LAST] + conv
        if first_atc <= start or deadline > now:
            continue
        carts += 1
        i = bisect_left(purchases, first_atc)
        j = bisect_right(purchases, deadline)
        if i >= j:
            abandoned += 1
    f["carts_30d"] = float(carts)
    f["cart_abandonment_rate_30d"] = abandoned / carts if carts else None


def _ref_reviews(state: UserState, now: int, f: Features) -> None:
    start = now - 365 * DAY_MS
    ratings = [r for t, r in state.reviews if start < t <= now]
    f["reviews_365d"] = float(len(ratings))
    f["avg_rating_365d"] = sum(ratings) / len(ratings) if ratings else None
    f["reviews_lifetime"] = float(state.reviews_lifetime)


def _ref_text(state: UserState, now: int, f: Features) -> None:
    """Review-text features, written the obvious way."""
    start = now - 90 * DAY_MS
    recs = [r for r in state.texts.values() if start < r[T_TS] <= now]
    n = len(recs)
    purchases = sorted(
        o[O_FIRST_TS] for o in state.orders.values()
        if o[O_FIRST_TS] <= now and o[O_FLAGS] & PURCHASE_FLAGS
        and not o[O_FLAGS] & F_CANCELLED)
    f["text_reviews_90d"] = float(n)
    f["sentiment_90d"] = sum(r[T_SCORE] for r in recs) / n / 1000 if n else None
    f["negative_review_share_90d"] = (
        sum(1 for r in recs if r[T_SCORE] <= -200) / n if n else None)
    f["complaints_90d"] = float(sum(1 for r in recs if r[T_SCORE] <= -200 or r[T_NEGATIVE]))
    bits = {a: 1 << i for i, a in enumerate(ASPECTS)}
    for a, bit in bits.items():
        f[f"{a}_mention_share_90d"] = (
            sum(1 for r in recs if r[T_MENTIONED] & bit) / n if n else None)
    for a, bit in bits.items():
        m = [r for r in recs if r[T_MENTIONED] & bit]
        pol = sum(-1 if r[T_NEGATIVE] & bit else 1 if r[T_POSITIVE] & bit else 0 for r in m)
        f[f"{a}_polarity_90d"] = pol / len(m) if m else None
    for a, bit in bits.items():
        f[f"{a}_complaints_90d"] = float(sum(
            1 for r in recs if r[T_MENTIONED] & bit and r[T_NEGATIVE] & bit))
    f["quality_praise_90d"] = float(sum(
        1 for r in recs if r[T_POSITIVE] & bits["quality"]
        and not r[T_NEGATIVE] & bits["quality"]))
    f["logistics_complaints_after_order_14d"] = float(sum(
        1 for r in recs
        if r[T_NEGATIVE] & bits["logistics"] and r[T_TS] > now - 14 * DAY_MS
        and any(r[T_TS] - 30 * DAY_MS <= p <= r[T_TS] for p in purchases)))


# ---------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------


def _same(state: UserState, as_of: int | None = None,
          config: FeatureConfig = DEFAULT_CONFIG) -> None:
    got = vector(state, as_of, config)
    want = _ref_vector(state, as_of, config)
    assert got == want
    # same keys in the same order, and the same value types (float vs None)
    assert list(got) == list(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()], got
    assert repr(got) == repr(want)  # also tells -0.0 from 0.0


@functools.cache
def _analyzer() -> LocalAnalyzer:
    return LocalAnalyzer.default()


def _llm_view(ev: ReviewEvent, local: Analysis) -> EnrichedReview:
    """A different analysis of the same review, as the enrichment stage would send it."""
    aspects = [AspectMention(aspect="logistics", polarity="negative")]
    if ev.rating >= 4:
        aspects = [AspectMention(aspect="quality", polarity="positive")]
    return EnrichedReview(event_id=ev.event_id, user_id=ev.user_id, ts=ev.ts_ms, source="llm",
                          analysis=Analysis(lang=local.lang, sentiment=(ev.rating - 3) / 2,
                                            label=label_of((ev.rating - 3) / 2),
                                            aspects=aspects))


def _fold(states: dict[str, UserState], ev, config: FeatureConfig, n_review: int) -> UserState:
    """Reviews get the local analysis; every third also an LLM one, before or after."""
    if not isinstance(ev, ReviewEvent):
        return update(states.get(ev.user_id), ev, config)
    local = _analyzer().analyze(ev.text, ev.lang)
    if n_review % 3 == 0:
        st = apply_enrichment(states.get(ev.user_id), _llm_view(ev, local), config)
        return update(st, ev, config, analysis=local)
    st = update(states.get(ev.user_id), ev, config, analysis=local)
    if n_review % 3 == 1:
        st = apply_enrichment(st, _llm_view(ev, local), config)
    return st


def _replay(raw_events, every_later: int, config: FeatureConfig = DEFAULT_CONFIG) -> int:
    states: dict[str, UserState] = {}
    n = reviews = 0
    for i, raw in enumerate(raw_events):
        ev = msgspec.convert(raw, EVENT_TYPES[raw["type"]], strict=True)
        st = states[ev.user_id] = _fold(states, ev, config, reviews)
        reviews += isinstance(ev, ReviewEvent)
        _same(st, None, config)
        if i % every_later == 0:
            for k in LATER:
                _same(st, st.last_ts + k * DAY_MS, config)
            _same(st, st.last_ts - HOUR_MS, config)  # back again (earlier than cached)
            _same(st, None, config)
            _same(decode_state(encode_state(st)), None, config)
            assert decode_state(encode_state(st)) == st
        n += 1
    assert reviews == 0 or any(st.texts for st in states.values())
    for st in states.values():
        for k in LATER:
            _same(st, st.last_ts + k * DAY_MS + 1, config)
        _same(st, None, config)
    return n


def test_reference_lists_every_feature():
    v = _ref_vector(UserState(first_ts=1, last_ts=1))
    assert sorted(v) == sorted(FEATURE_NAMES) and len(v) == len(FEATURE_NAMES)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_histories_match_the_reference(seed):
    sim = generate(300, 20_000, seed=seed, end_ms=1_767_225_600_000)
    assert _replay(sim.events(), every_later=12) > 15_000


def test_short_lateness_and_cart_window_match_the_reference():
    cfg = FeatureConfig(lateness_ms=60_000, cart_conversion_ms=2 * HOUR_MS, max_sessions=20,
                        max_orders=5, max_reviews=3)
    sim = generate(100, 6_000, seed=11, end_ms=1_767_225_600_000)
    _replay(sim.events(), every_later=5, config=cfg)


@pytest.mark.skipif(not RETAIL.exists(), reason="UCI Online Retail file not available")
def test_retail_orders_match_the_reference():
    from streams.sim.retail import load_retail_orders

    events, _ = load_retail_orders(RETAIL)
    assert _replay(events[:5_000], every_later=3) == 5_000
