"""The model inputs: which features the learners read, how they are stored and transformed.

Why a fixed subset in a fixed order: pending label snapshots live in the user's durable
state, so they hold the raw values as a compact list (:func:`compact`) rather than a dict
of every feature. Transforms (:func:`transform`) are applied when a model reads them, so
they can change without invalidating stored snapshots.

Counts and money are heavy-tailed, so they enter as ``log1p``; day counts likewise
(the step from 1 to 10 days matters more than from 200 to 210). An undefined feature
(``None``: no order yet, no session) becomes 0 and, for recency, a missing indicator.

Examples
--------
>>> x = compact({"orders_lifetime": 3.0, "recency_days": None})
>>> len(x) == len(MODEL_FEATURES), x[MODEL_FEATURES.index("orders_lifetime")]
(True, 3.0)
>>> t = transform(x)
>>> round(t["orders_lifetime"], 3), t["no_orders"]
(1.386, 1.0)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence

MODEL_FEATURES: tuple[str, ...] = (
    "clicks_24h", "clicks_7d", "clicks_30d", "sessions_7d", "sessions_30d",
    "views_30d", "add_to_cart_30d", "add_to_cart_rate_30d", "carts_30d",
    "cart_abandonment_rate_30d", "avg_session_clicks_30d", "distinct_categories_30d",
    "last_seen_days", "tenure_days", "recency_days", "first_order_days", "orders_lifetime",
    "orders_30d", "orders_90d", "orders_365d", "spend_30d", "spend_90d", "spend_365d",
    "aov_365d", "cancel_rate_365d", "refund_rate_365d", "coupon_share_365d",
    "avg_discount_365d", "reviews_365d", "avg_rating_365d",
)
"""Raw features stored with every label snapshot (a subset of ``FEATURE_NAMES``)."""

_LOG = frozenset({
    "clicks_24h", "clicks_7d", "clicks_30d", "sessions_7d", "sessions_30d", "views_30d",
    "add_to_cart_30d", "carts_30d", "avg_session_clicks_30d", "distinct_categories_30d",
    "last_seen_days", "tenure_days", "recency_days", "first_order_days", "orders_lifetime",
    "orders_30d", "orders_90d", "orders_365d", "spend_30d", "spend_90d", "spend_365d",
    "aov_365d", "reviews_365d",
})
_INDEX = {name: i for i, name in enumerate(MODEL_FEATURES)}
I_RECENCY = _INDEX["recency_days"]
I_FIRST_ORDER = _INDEX["first_order_days"]
I_ORDERS = _INDEX["orders_lifetime"]
IS_LOG = tuple(name in _LOG for name in MODEL_FEATURES)
"""Which raw inputs enter as ``log1p``, and where the derived ones read from (for the
compiled transform in :mod:`models.learn.kernels`)."""
TIME_FEATURES = frozenset({"last_seen_days", "tenure_days", "recency_days", "first_order_days"})
"""Features that grow with time alone (days since something)."""
_IS_TIME = tuple(name in TIME_FEATURES for name in MODEL_FEATURES)
_log1p = math.log1p

ROW_NAMES: tuple[str, ...] = (*MODEL_FEATURES, "no_orders", "order_rate", "recency_share",
                              "overdue")
"""Names of the transformed inputs: the raw features plus derived ones."""

_ROW_INDEX = {name: i for i, name in enumerate(ROW_NAMES)}

Compact = list[float | None]
Row = dict[str, float]


_PICK = operator.itemgetter(*MODEL_FEATURES)


def compact(features: Mapping[str, float | None]) -> Compact:
    """The raw values of :data:`MODEL_FEATURES`, in order (missing keys become None).

    One ``itemgetter`` call for a full feature vector (what the worker passes: it holds
    every key), a lookup per name for a partial one.
    """
    try:
        return list(_PICK(features))
    except KeyError:
        get = features.get
        return [get(name) for name in MODEL_FEATURES]


def transform(x: Sequence[float | None]) -> Row:
    """Model-ready dict from a :func:`compact` list (log transforms, None -> 0)."""
    return dict(zip(ROW_NAMES, transform_values(x), strict=True))


def transform_values(x: Sequence[float | None]) -> list[float]:
    """The values of :func:`transform` as a list in :data:`ROW_NAMES` order (fast path)."""
    out = [0.0 if v is None else (_log1p(v if v > 0.0 else 0.0) if log else float(v))
           for v, log in zip(x, IS_LOG, strict=True)]
    recency = x[I_RECENCY]
    # Ratios in the spirit of BG/NBD: purchase rate over the customer's life, and the
    # share of that life that has passed since the last purchase.
    life = x[I_FIRST_ORDER]
    if life is not None and recency is not None:
        orders = x[I_ORDERS] or 0.0
        share = recency / (life + 1.0)
        # recency in units of the customer's own mean gap between orders
        out += (0.0, _log1p(orders / (life + 1.0) * 30.0), share, _log1p(share * orders))
    else:
        out += (1.0 if recency is None else 0.0, 0.0, 1.0, 0.0)
    return out


def raw(x: Sequence[float | None], name: str,
        values: Sequence[float] | None = None) -> float | None:
    """One raw value of a compact list by feature name (derived ones: transformed, from
    ``values`` = ``transform_values(x)`` when the caller has it)."""
    i = _INDEX.get(name)
    if i is not None:
        return x[i]
    if values is None:
        values = transform_values(x)
    return values[_ROW_INDEX[name]] if name in _ROW_INDEX else None


def changed_materially(old: Sequence[float | None], new: Sequence[float | None],
                       tolerance: float) -> bool:
    """True when any behavioural value moved by more than ``tolerance`` relative to its size.

    The scale floor of 1 means a count going 0 -> 1 is material while a spend going
    1,000 -> 1,050 at a 10 % tolerance is not. Features that change by the mere passing
    of time (:data:`TIME_FEATURES`) are skipped: the suite's maximum staleness covers them.

    >>> a = compact({"orders_lifetime": 2.0, "recency_days": 1.0, "spend_365d": 1000.0})
    >>> changed_materially(a, compact({"orders_lifetime": 2.0, "recency_days": 9.0,
    ...                                "spend_365d": 1050.0}), 0.1)
    False
    >>> changed_materially(a, compact({"orders_lifetime": 3.0, "recency_days": 0.0,
    ...                                "spend_365d": 1050.0}), 0.1)
    True
    """
    for a, b, timed in zip(old, new, _IS_TIME, strict=True):
        if timed:
            continue
        if a is None or b is None:
            if a is not b:
                return True
            continue
        if abs(a - b) > tolerance * max(abs(a), abs(b), 1.0):
            return True
    return False
