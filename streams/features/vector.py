"""``vector(state, as_of) -> dict``: the named features segment rules and models read.

Windows are trailing, ``(as_of - W, as_of]``, evaluated at the resolution of the
buckets that back them (1-minute buckets for the 1 h window, 1-hour buckets for the
others). ``as_of`` defaults to the user's latest event time, so a user's features depend
only on that user's events, never on how partitions interleave. A feature that is
undefined (an average over nothing, recency without any order) is ``None``; rules treat
``None`` as "condition not met".
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from models.text.result import ASPECTS
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
    S_FIRST,
    S_FIRST_ATC,
    S_LAST,
    T_MENTIONED,
    T_NEGATIVE,
    T_POSITIVE,
    T_SCORE,
    T_TS,
    UserState,
)
from streams.features.update import DEFAULT_CONFIG, PURCHASE_FLAGS, FeatureConfig

Features = dict[str, float | None]

CLICK_WINDOWS = {"1h": HOUR_MS, "24h": 24 * HOUR_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS}
ORDER_WINDOWS = {"30d": 30 * DAY_MS, "90d": 90 * DAY_MS, "365d": 365 * DAY_MS}
PAYMENT_METHODS = ("card", "paypal", "wallet", "cod", "bank_transfer", "gift_card")
_PAY_KEYS = tuple((m, f"pay_share_{m}") for m in (*PAYMENT_METHODS, "other"))

FEATURE_NAMES: tuple[str, ...] = (
    *(f"clicks_{w}" for w in CLICK_WINDOWS),
    *(f"sessions_{w}" for w in CLICK_WINDOWS),
    "views_30d", "add_to_cart_30d", "add_to_cart_rate_30d", "carts_30d",
    "cart_abandonment_rate_30d", "avg_session_clicks_30d", "distinct_categories_30d",
    "last_seen_days", "tenure_days",
    "recency_days", "first_order_days", "orders_lifetime",
    *(f"orders_{w}" for w in ORDER_WINDOWS),
    *(f"spend_{w}" for w in ORDER_WINDOWS),
    "aov_365d", "cancel_rate_365d", "refund_rate_365d", "coupon_share_365d",
    "avg_discount_365d",
    *(f"pay_share_{m}" for m in (*PAYMENT_METHODS, "other")),
    "reviews_365d", "avg_rating_365d", "reviews_lifetime",
)
# Review-text features (the local analyzer's or, once it arrives, the LLM's analysis).
TEXT_FEATURE_NAMES: tuple[str, ...] = (
    "text_reviews_90d", "sentiment_90d", "negative_review_share_90d", "complaints_90d",
    *(f"{a}_mention_share_90d" for a in ASPECTS),
    *(f"{a}_polarity_90d" for a in ASPECTS),
    *(f"{a}_complaints_90d" for a in ASPECTS),
    "quality_praise_90d", "logistics_complaints_after_order_14d",
)
FEATURE_NAMES = (*FEATURE_NAMES, *TEXT_FEATURE_NAMES)

FEATURE_DOCS: dict[str, str] = {
    **{f"clicks_{w}": f"clicks in the last {w}" for w in CLICK_WINDOWS},
    **{f"sessions_{w}": f"sessions whose last click lies in the last {w}"
       for w in CLICK_WINDOWS},
    "views_30d": "product views in the last 30 days",
    "add_to_cart_30d": "add-to-cart clicks in the last 30 days",
    "add_to_cart_rate_30d": "add-to-cart clicks per view, last 30 days",
    "carts_30d": "filled carts (sessions with add-to-cart) whose 24 h conversion window closed",
    "cart_abandonment_rate_30d": "share of those carts not followed by an order",
    "avg_session_clicks_30d": "clicks per session, last 30 days",
    "distinct_categories_30d": "categories browsed or bought in the last 30 days",
    "last_seen_days": "days since the user's latest event",
    "tenure_days": "days since the user's first event",
    "recency_days": "days since the latest purchase",
    "first_order_days": "days since the first purchase",
    "orders_lifetime": "purchases ever (placed, paid or delivered orders)",
    **{f"orders_{w}": f"purchases in the last {w} (cancelled excluded)" for w in ORDER_WINDOWS},
    **{f"spend_{w}": f"net spend in the last {w} (refunds subtracted)" for w in ORDER_WINDOWS},
    "aov_365d": "average net order value, last 365 days",
    "cancel_rate_365d": "cancelled orders per order attempt, last 365 days",
    "refund_rate_365d": "refunded orders per purchase, last 365 days",
    "coupon_share_365d": "share of purchases with a coupon, last 365 days",
    "avg_discount_365d": "average discount as a share of the list price, last 365 days",
    **{f"pay_share_{m}": f"share of purchases paid by {m}, last 365 days"
       for m in (*PAYMENT_METHODS, "other")},
    "reviews_365d": "reviews written in the last 365 days",
    "avg_rating_365d": "average star rating, last 365 days",
    "reviews_lifetime": "reviews ever written",
    "text_reviews_90d": "reviews with analysed text in the last 90 days",
    "sentiment_90d": "average text sentiment (-1 negative .. 1 positive), last 90 days",
    "negative_review_share_90d": "share of those reviews whose text is negative",
    "complaints_90d": "reviews with negative text or a criticised aspect, last 90 days",
    **{f"{a}_mention_share_90d": f"share of reviews (90 days) that talk about {a}"
       for a in ASPECTS},
    **{f"{a}_polarity_90d": f"mean polarity (-1 .. 1) of the {a} mentions, last 90 days"
       for a in ASPECTS},
    **{f"{a}_complaints_90d": f"reviews criticising {a}, last 90 days" for a in ASPECTS},
    "quality_praise_90d": "reviews praising quality, last 90 days",
    "logistics_complaints_after_order_14d": (
        "delivery complaints in the last 14 days made within 30 days after a purchase"),
}
"""What each feature means (``segstream features list``)."""


def vector(
    state: UserState, as_of: int | None = None, config: FeatureConfig = DEFAULT_CONFIG
) -> Features:
    """Compute every feature in :data:`FEATURE_NAMES` for ``state`` at ``as_of`` (epoch ms)."""
    # This runs once per event, so it is written for CPython's fixed costs: one pass per
    # collection with local accumulators, unpacked records, the result copied from a
    # dict that already holds every key, and the order-window features memoised while
    # no order record changes and no order crosses a window boundary (see
    # _order_windows). Key order is part of the output (snapshots serialise the dict)
    # and matches the straightforward version (tests/.../test_vector_equivalence.py).
    now = state.last_ts if as_of is None else as_of
    if state.orders:
        oc = state._orders_cache
        if oc is None or not oc[0] <= now < oc[1]:
            oc = _order_windows(state, now)
    else:
        oc = _NO_ORDERS
    last_order = oc[3]
    first_order = state.first_order_ts
    t30 = now - _D30
    n_cat = 0.0
    for t in state.categories.values():
        if t30 < t <= now:
            n_cat += 1.0
    reviews = state.reviews
    if reviews:
        start = now - _D365
        ratings = [r for t, r in reviews if start < t <= now]
        n_rev = float(len(ratings))
        avg_rating = sum(ratings) / len(ratings) if ratings else None
    else:
        n_rev, avg_rating = 0.0, None
    sessions = state.sessions
    if not state.click_hour and not sessions:
        # Order-only users (a shop's back-office feed, the Online Retail file).
        return {
            "clicks_1h": 0.0, "clicks_24h": 0.0, "clicks_7d": 0.0, "clicks_30d": 0.0,
            "sessions_1h": 0.0, "sessions_24h": 0.0, "sessions_7d": 0.0,
            "sessions_30d": 0.0, "views_30d": 0.0, "add_to_cart_30d": 0.0,
            "add_to_cart_rate_30d": None, "avg_session_clicks_30d": None,
            "distinct_categories_30d": n_cat,
            **oc[2],
            "orders_lifetime": float(state.orders_lifetime),
            "recency_days": (now - last_order) / DAY_MS if last_order else None,
            "first_order_days": (now - first_order) / DAY_MS if first_order else None,
            "carts_30d": 0.0, "cart_abandonment_rate_30d": None,
            "reviews_365d": n_rev, "avg_rating_365d": avg_rating,
            "reviews_lifetime": float(state.reviews_lifetime),
            "last_seen_days": (now - state.last_ts) / DAY_MS,
            "tenure_days": (now - state.first_ts) / DAY_MS,
            **(_texts(state, now, oc[4]) if state.texts else _NO_TEXT),
        }

    # 1-minute buckets for the last hour ((now - 1 h) // 1 min == now // 1 min - 60).
    hi_min = now // MINUTE_MS
    lo_min = hi_min - 60
    c1 = 0
    for m, c in state.click_min.items():
        if lo_min < m <= hi_min:
            c1 += c
    # 1-hour buckets: (now - k h) // 1 h == now // 1 h - k.
    hi_h = now // HOUR_MS
    lo24, lo7, lo30 = hi_h - 24, hi_h - 7 * 24, hi_h - 30 * 24
    c24 = c7 = c30 = views = atc = 0
    for h, (n, v, a) in state.click_hour.items():  # H_CLICKS, H_VIEWS, H_ATC
        if lo30 < h <= hi_h:
            c30 += n
            views += v
            atc += a
            if h > lo7:
                c7 += n
                if h > lo24:
                    c24 += n

    # Sessions by their last click, and carts whose conversion window has closed.
    t1, t24, t7 = now - HOUR_MS, now - _D1, now - _D7
    conv = config.cart_conversion_ms
    purchases = oc[4]
    n1 = n24 = n7 = n30 = clicks_30 = carts = abandoned = 0
    # slots S_FIRST, S_LAST, S_CLICKS, S_ATC, S_FIRST_ATC
    for _, last, clicks, n_atc, first_atc in sessions.values():
        if t30 < last <= now:
            n30 += 1
            clicks_30 += clicks
            if last > t7:
                n7 += 1
                if last > t24:
                    n24 += 1
                    if last > t1:
                        n1 += 1
        if n_atc:
            deadline = last + conv
            if first_atc > t30 and deadline <= now:
                carts += 1
                # abandoned unless a purchase lies in [first_atc, deadline]
                if bisect_left(purchases, first_atc) >= bisect_right(purchases, deadline):
                    abandoned += 1
    # Copying a dict that already holds every key (and the memoised order features) and
    # storing into existing slots is about twice as fast as building the dict afresh.
    f = oc[5].copy()
    f["clicks_1h"] = float(c1)
    f["clicks_24h"] = float(c24)
    f["clicks_7d"] = float(c7)
    f["clicks_30d"] = float(c30)
    f["views_30d"] = float(views)
    f["add_to_cart_30d"] = float(atc)
    f["add_to_cart_rate_30d"] = atc / views if views else None
    f["sessions_1h"] = float(n1)
    f["sessions_24h"] = float(n24)
    f["sessions_7d"] = float(n7)
    f["sessions_30d"] = float(n30)
    f["avg_session_clicks_30d"] = clicks_30 / n30 if n30 else None
    f["distinct_categories_30d"] = n_cat
    f["orders_lifetime"] = float(state.orders_lifetime)
    f["recency_days"] = (now - last_order) / DAY_MS if last_order else None
    f["first_order_days"] = (now - first_order) / DAY_MS if first_order else None
    f["carts_30d"] = float(carts)
    f["cart_abandonment_rate_30d"] = abandoned / carts if carts else None
    f["reviews_365d"] = n_rev
    f["avg_rating_365d"] = avg_rating
    f["reviews_lifetime"] = float(state.reviews_lifetime)
    f["last_seen_days"] = (now - state.last_ts) / DAY_MS
    f["tenure_days"] = (now - state.first_ts) / DAY_MS
    if state.texts:
        f.update(_texts(state, now, purchases))
    return f


def _texts(state: UserState, now: int, purchases: list[int]) -> Features:
    """Text features, memoised while no text record and no purchase changes and ``now``
    stays between the same window boundaries (as for the order windows)."""
    tc = state._texts_cache
    if tc is None or tc[2] is not purchases or not tc[0] <= now < tc[1]:
        tc = _text_windows(state.texts, now, purchases)
        state.__dict__["_texts_cache"] = tc
    result: Features = tc[3]
    return result


_ASPECT_BITS = tuple((1 << i, a) for i, a in enumerate(ASPECTS))
_QUALITY_BIT = 1 << ASPECTS.index("quality")
_LOGISTICS_BIT = 1 << ASPECTS.index("logistics")
_NEGATIVE_MILLI = -200  # models.text.result.NEUTRAL_BAND in thousandths
_NO_TEXT: Features = {
    "text_reviews_90d": 0.0, "sentiment_90d": None, "negative_review_share_90d": None,
    "complaints_90d": 0.0,
    **{f"{a}_mention_share_90d": None for a in ASPECTS},
    **{f"{a}_polarity_90d": None for a in ASPECTS},
    **{f"{a}_complaints_90d": 0.0 for a in ASPECTS},
    "quality_praise_90d": 0.0, "logistics_complaints_after_order_14d": 0.0,
}


_MENTION_KEYS = tuple(f"{a}_mention_share_90d" for a in ASPECTS)
_POLARITY_KEYS = tuple(f"{a}_polarity_90d" for a in ASPECTS)
_COMPLAINT_KEYS = tuple(f"{a}_complaints_90d" for a in ASPECTS)
_BITS = tuple(bit for bit, _ in _ASPECT_BITS)


def _text_windows(texts: dict[str, list[int]], now: int, purchases: list[int]
                  ) -> tuple[int | float, int | float, list[int], Features]:
    """Review-text features over the trailing 90 days (14 for the after-order complaints),
    with the interval of ``now`` over which they stay the same: a record at ``t`` counts
    iff ``t <= now < t + 90 d`` (recent iff ``now < t + 14 d``)."""
    start, recent = now - _D90, now - 14 * _D1
    lo: int | float = -math.inf
    hi: int | float = math.inf
    n = total = negative = complaints = praise = after_order = 0
    mentions = [0, 0, 0, 0, 0]
    negs = [0, 0, 0, 0, 0]
    poss = [0, 0, 0, 0, 0]
    for t, score, mentioned, neg, pos, _ in texts.values():  # slots T_*
        if t > now:
            if t < hi:
                hi = t
            continue
        if t > lo:
            lo = t
        for end in (t + _D14, t + _D90):
            if end > now:
                if end < hi:
                    hi = end
                break
            if end > lo:
                lo = end
        if t <= start:
            continue
        n += 1
        total += score
        if score <= _NEGATIVE_MILLI:
            negative += 1
            complaints += 1
        elif neg:
            complaints += 1
        if mentioned:
            for i, bit in enumerate(_BITS):
                if mentioned & bit:
                    mentions[i] += 1
                    if neg & bit:
                        negs[i] += 1
                    elif pos & bit:
                        poss[i] += 1
            if pos & _QUALITY_BIT:
                praise += 1
            # a purchase in [t - 30 d, t] makes it a complaint about that delivery
            if neg & _LOGISTICS_BIT and t > recent and \
                    bisect_right(purchases, t) > bisect_left(purchases, t - _D30):
                after_order += 1
    if not n:
        return lo, hi, purchases, _NO_TEXT
    f: Features = {"text_reviews_90d": float(n), "sentiment_90d": total / n / 1000,
                   "negative_review_share_90d": negative / n,
                   "complaints_90d": float(complaints)}
    for i, key in enumerate(_MENTION_KEYS):
        f[key] = mentions[i] / n
    for i, key in enumerate(_POLARITY_KEYS):
        m = mentions[i]
        f[key] = (poss[i] - negs[i]) / m if m else None
    for i, key in enumerate(_COMPLAINT_KEYS):
        f[key] = float(negs[i])
    f["quality_praise_90d"] = float(praise)
    f["logistics_complaints_after_order_14d"] = float(after_order)
    return lo, hi, purchases, f


_D1, _D7, _D30, _D90, _D365 = DAY_MS, 7 * DAY_MS, 30 * DAY_MS, 90 * DAY_MS, 365 * DAY_MS
_D14 = 14 * DAY_MS
if (H_CLICKS, H_VIEWS, H_ATC, S_FIRST, S_LAST, S_CLICKS, S_ATC, S_FIRST_ATC, T_TS, T_SCORE,
        T_MENTIONED, T_NEGATIVE, T_POSITIVE, len(ASPECTS)) != (
        0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5):
    raise ImportError("vector() hard-codes the record slots of streams.features.state")

# Order-window features of a user without any order record (nothing is undefined-free).
_NO_ORDER_FEATURES: Features = {
    "orders_30d": 0.0, "orders_90d": 0.0, "orders_365d": 0.0,
    "spend_30d": 0.0, "spend_90d": 0.0, "spend_365d": 0.0,
    "aov_365d": None, "cancel_rate_365d": None, "refund_rate_365d": None,
    "coupon_share_365d": None, "avg_discount_365d": None,
    **{key: None for _, key in _PAY_KEYS},
}
# Every feature in the order vector() emits for a user with click data; the order-window
# features are filled in by _with_orders, the others are overwritten by vector().
_CLICK_KEYS = (
    "clicks_1h", "clicks_24h", "clicks_7d", "clicks_30d", "views_30d", "add_to_cart_30d",
    "add_to_cart_rate_30d", "sessions_1h", "sessions_24h", "sessions_7d", "sessions_30d",
    "avg_session_clicks_30d", "distinct_categories_30d",
)
_TAIL_KEYS = (
    "orders_lifetime", "recency_days", "first_order_days", "carts_30d",
    "cart_abandonment_rate_30d", "reviews_365d", "avg_rating_365d", "reviews_lifetime",
    "last_seen_days", "tenure_days",
)


def _with_orders(order_features: Features) -> Features:
    return {**dict.fromkeys(_CLICK_KEYS), **order_features, **dict.fromkeys(_TAIL_KEYS),
            **_NO_TEXT}


# (valid from, valid until, order-window features, last purchase time, sorted purchase
# times, every feature with the order-window ones filled in)
_OrderWindows = tuple[int | float, int | float, Features, int, list[int], Features]
_NO_ORDERS: _OrderWindows = (-math.inf, math.inf, _NO_ORDER_FEATURES, 0, [],
                             _with_orders(_NO_ORDER_FEATURES))


def _order_windows(state: UserState, now: int) -> _OrderWindows:
    """Order features that depend on ``now`` only through window membership.

    An order at ``t`` counts at ``now`` iff ``t <= now``, and lies in window ``W`` iff
    ``now < t + W``. Every test below is one of these comparisons, so the result is the
    same for every ``now`` in ``[lo, hi)``, where ``lo`` is the latest and ``hi`` the
    earliest of these boundaries on either side of ``now``. It is kept on the state until
    an order changes (``orders_changed``) or ``now`` leaves that interval.
    """
    # One pass with local accumulators: heavy buyers hold hundreds of orders.
    s30, s90, s365 = now - _D30, now - _D90, now - _D365
    lo: int | float = -math.inf
    hi: int | float = math.inf
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
            if t < hi:
                hi = t
            continue
        if t > lo:
            lo = t
        for end in (t + _D30, t + _D90, t + _D365):
            if end > now:
                if end < hi:
                    hi = end
                break
            if end > lo:
                lo = end
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
    f: Features = {}
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
    purchase_times.sort()
    result: _OrderWindows = (lo, hi, f, last_order, purchase_times, _with_orders(f))
    state.__dict__["_orders_cache"] = result
    return result
