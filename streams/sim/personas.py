"""Personas: the parameters that make a synthetic shopper behave like a kind of customer.

A persona is data, not code: the generator runs one behaviour model for everyone and the
persona only sets its knobs (how often a person visits, how many carts they leave, how
often and how much they buy, how they pay, how they rate). Keeping behaviour in numbers
means a new persona is a new table row, and the calibration against the segment rules in
``models/segments/default.yaml`` can be read off the values below.

Calibration notes (features are evaluated at each user's *latest* event, so every persona
has a guaranteed late visit that fixes where its final feature vector is taken):

``bargain_hunter`` -> ``price_sensitive``
    3-8 cheap orders (about one every two weeks), 85 % with a 20-40 % coupon:
    ``coupon_share_365d`` and ``avg_discount_365d`` far above 0.5 / 0.2, while the spend
    stays below the vip bar and carts are rarely left behind.
``loyal_big_spender`` -> ``vip``
    An order every 9-16 days from the start of the span, items at 80-400 EUR: about
    seven orders and well over 1000 EUR net of the odd refund.
``window_shopper`` -> ``high_activity``
    About one habitual visit a day (gamma gaps of shape 5, so weekly counts vary
    little): some week reaches ``sessions_7d >= 8`` and leaving would need fewer than 4
    sessions *and* 25 clicks in a week, which does not happen. Carts only when buying,
    and buying is rare (10 %), so ``cart_abandoner`` stays out of reach.
``churning_customer`` -> ``dormant``
    Orders only in the first weeks; the last order is 70-78 days before the end and the
    last visit 0-8 days before it, so ``recency_days`` >= 62 at the final event.
``new_customer`` -> ``new_customer``
    First seen 3-25 days before the end, first order within two days, at most two orders.
``cart_abandoner`` -> ``cart_abandoner``
    A visit every ~4 days, 85 % of them leaving something in the cart, an order about a
    month apart: ``carts_30d`` ~ 6 with an abandonment rate ~ 0.8.

Personas other than the bargain hunter use coupons rarely (4-8 %): with two orders a coupon
already means ``coupon_share_365d = 0.5``, the ``price_sensitive`` bar.
Cancelled orders do not count towards ``min_orders``: the generator lets the shopper
order again, as people do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Persona:
    """Behaviour parameters of one kind of shopper.

    Time parameters are days; ``*_days_ago`` ranges are measured back from the end of the
    simulated span and drawn uniformly per user.

    Attributes
    ----------
    name, target
        Persona name and the segment its members are expected to end up in.
    first_seen_days_ago
        When the user's first event happens (clamped to the span).
    last_visit_days_ago
        A visit that is guaranteed to happen; it anchors the user's final features.
    session_rate, late_session_rate
        Browsing sessions per day while the user still orders, and after orders stopped.
    session_regularity
        Shape of the gamma-distributed gaps between sessions (1 = Poisson; higher = more
        habitual). Habitual visitors keep weekly counts away from segment thresholds.
    extra_clicks
        Mean number of optional clicks per session (views, searches, wishlist adds); the
        generator scales these to hit a requested event count.
    max_click_scale
        Upper bound of that scaling for this persona (``math.inf``: none), so that a
        request for many events does not make every persona ``high_activity``.
    action_weights
        Relative weights of view, search and wishlist among the optional clicks.
    cart_prob
        Share of browsing sessions that add something to the cart without ordering.
    order_prob
        Probability that the user orders at all during the span.
    min_orders, max_orders
        Bounds on the number of orders in the span.
    first_order_delay_days, order_gap_days, order_stop_days_ago
        The first order follows the first visit by ``first_order_delay_days``; further
        orders come every ``order_gap_days``; none after ``order_stop_days_ago``.
    items_per_order, max_quantity, price_band
        Basket size, units per line and the EUR price band of the products bought.
    coupon_prob, coupon_discount, sale_prob, sale_discount
        How often an order uses a coupon or a sale and the discount as a share of the
        gross basket value.
    payment_weights
        Relative weights of card, paypal, wallet, cod, bank_transfer and gift_card.
    cancel_prob, refund_prob
        Share of orders that are cancelled before payment or refunded after delivery.
    review_prob, rating_weights, zh_share
        Share of delivered orders that get a review, the weights of ratings 1-5 and the
        share of reviews written in Chinese.
    """

    name: str
    target: str
    first_seen_days_ago: Range
    last_visit_days_ago: Range
    session_rate: float
    late_session_rate: float
    session_regularity: float
    extra_clicks: float
    max_click_scale: float
    action_weights: tuple[float, float, float]
    cart_prob: float
    order_prob: float
    min_orders: int
    max_orders: int
    first_order_delay_days: Range
    order_gap_days: Range
    order_stop_days_ago: Range
    items_per_order: tuple[int, int]
    max_quantity: int
    price_band: Range
    coupon_prob: float
    coupon_discount: Range
    sale_prob: float
    sale_discount: Range
    payment_weights: tuple[float, float, float, float, float, float]
    cancel_prob: float
    refund_prob: float
    review_prob: float
    rating_weights: tuple[float, float, float, float, float]
    zh_share: float = 0.2


BARGAIN_HUNTER = Persona(
    name="bargain_hunter", target="price_sensitive",
    first_seen_days_ago=(82, 90), last_visit_days_ago=(0, 5),
    session_rate=0.2, late_session_rate=0.2, session_regularity=2.0,
    extra_clicks=3.0, max_click_scale=1.5, action_weights=(0.45, 0.4, 0.15), cart_prob=0.05,
    order_prob=1.0, min_orders=3, max_orders=8,
    first_order_delay_days=(0, 8), order_gap_days=(10, 20), order_stop_days_ago=(0, 0),
    items_per_order=(1, 3), max_quantity=3, price_band=(3, 35),
    coupon_prob=0.85, coupon_discount=(0.2, 0.4), sale_prob=0.6, sale_discount=(0.15, 0.35),
    payment_weights=(3, 4, 2, 1, 0.5, 1.5),
    cancel_prob=0.05, refund_prob=0.03,
    review_prob=0.35, rating_weights=(1, 1, 3, 4, 3),
)

LOYAL_BIG_SPENDER = Persona(
    name="loyal_big_spender", target="vip",
    first_seen_days_ago=(84, 90), last_visit_days_ago=(0, 5),
    session_rate=0.2, late_session_rate=0.2, session_regularity=2.0,
    extra_clicks=4.0, max_click_scale=1.5, action_weights=(0.75, 0.15, 0.1), cart_prob=0.04,
    order_prob=1.0, min_orders=4, max_orders=12,
    first_order_delay_days=(0, 6), order_gap_days=(9, 16), order_stop_days_ago=(0, 0),
    items_per_order=(1, 3), max_quantity=2, price_band=(80, 400),
    coupon_prob=0.08, coupon_discount=(0.05, 0.1), sale_prob=0.05, sale_discount=(0.05, 0.1),
    payment_weights=(6, 2, 2, 0, 1, 0.3),
    cancel_prob=0.03, refund_prob=0.03,
    review_prob=0.4, rating_weights=(0.2, 0.3, 1, 4, 6),
)

WINDOW_SHOPPER = Persona(
    name="window_shopper", target="high_activity",
    first_seen_days_ago=(30, 90), last_visit_days_ago=(0, 1),
    session_rate=1.05, late_session_rate=1.05, session_regularity=5.0,
    extra_clicks=2.0, max_click_scale=math.inf, action_weights=(0.6, 0.25, 0.15), cart_prob=0.0,
    order_prob=0.1, min_orders=0, max_orders=1,
    first_order_delay_days=(2, 40), order_gap_days=(60, 90), order_stop_days_ago=(30, 40),
    items_per_order=(1, 2), max_quantity=1, price_band=(10, 150),
    coupon_prob=0.15, coupon_discount=(0.05, 0.15), sale_prob=0.1, sale_discount=(0.05, 0.2),
    payment_weights=(4, 4, 3, 0.5, 0.5, 1),
    cancel_prob=0.05, refund_prob=0.05,
    review_prob=0.2, rating_weights=(1, 1, 2, 3, 3),
)

CHURNING_CUSTOMER = Persona(
    name="churning_customer", target="dormant",
    first_seen_days_ago=(86, 90), last_visit_days_ago=(0, 8),
    session_rate=0.35, late_session_rate=0.06, session_regularity=1.5,
    extra_clicks=2.5, max_click_scale=1.5, action_weights=(0.7, 0.2, 0.1), cart_prob=0.05,
    order_prob=1.0, min_orders=2, max_orders=4,
    first_order_delay_days=(0, 2), order_gap_days=(4, 8), order_stop_days_ago=(70, 78),
    items_per_order=(1, 3), max_quantity=2, price_band=(10, 90),
    coupon_prob=0.04, coupon_discount=(0.05, 0.15), sale_prob=0.1, sale_discount=(0.05, 0.15),
    payment_weights=(4, 3, 1, 1, 1, 0.3),
    cancel_prob=0.08, refund_prob=0.08,
    review_prob=0.45, rating_weights=(4, 3, 2, 1, 0.5),
)

NEW_CUSTOMER = Persona(
    name="new_customer", target="new_customer",
    first_seen_days_ago=(3, 25), last_visit_days_ago=(0, 2),
    session_rate=0.25, late_session_rate=0.25, session_regularity=2.0,
    extra_clicks=3.5, max_click_scale=1.5, action_weights=(0.6, 0.3, 0.1), cart_prob=0.05,
    order_prob=1.0, min_orders=1, max_orders=2,
    first_order_delay_days=(0, 2), order_gap_days=(6, 20), order_stop_days_ago=(0.2, 0.5),
    items_per_order=(1, 3), max_quantity=2, price_band=(10, 120),
    coupon_prob=0.04, coupon_discount=(0.05, 0.1), sale_prob=0.1, sale_discount=(0.05, 0.1),
    payment_weights=(4, 4, 2, 1, 0.5, 0.5),
    cancel_prob=0.04, refund_prob=0.02,
    review_prob=0.35, rating_weights=(0.5, 0.5, 1.5, 3, 3),
)

CART_ABANDONER = Persona(
    name="cart_abandoner", target="cart_abandoner",
    first_seen_days_ago=(82, 90), last_visit_days_ago=(0, 3),
    session_rate=0.25, late_session_rate=0.25, session_regularity=3.0,
    extra_clicks=2.5, max_click_scale=1.5, action_weights=(0.7, 0.2, 0.1), cart_prob=0.85,
    order_prob=1.0, min_orders=2, max_orders=4,
    first_order_delay_days=(0, 15), order_gap_days=(22, 36), order_stop_days_ago=(0, 0),
    items_per_order=(1, 2), max_quantity=2, price_band=(15, 150),
    coupon_prob=0.04, coupon_discount=(0.05, 0.15), sale_prob=0.1, sale_discount=(0.05, 0.1),
    payment_weights=(4, 4, 2, 1, 0.5, 0.5),
    cancel_prob=0.06, refund_prob=0.03,
    review_prob=0.25, rating_weights=(1, 1, 2, 3, 2),
)

PERSONAS: Mapping[str, Persona] = MappingProxyType({
    p.name: p
    for p in (BARGAIN_HUNTER, LOYAL_BIG_SPENDER, WINDOW_SHOPPER, CHURNING_CUSTOMER,
              NEW_CUSTOMER, CART_ABANDONER)
})
"""Every built-in persona by name (read-only)."""

DEFAULT_MIX: Mapping[str, float] = MappingProxyType({
    "bargain_hunter": 0.20,
    "loyal_big_spender": 0.10,
    "window_shopper": 0.20,
    "churning_customer": 0.15,
    "new_customer": 0.15,
    "cart_abandoner": 0.20,
})
"""Share of users per persona when the caller gives no mix."""
