"""``update(state, event) -> state``: fold one event into a user's feature state.

Pure with respect to the outside world: no Kafka, no clock, no I/O. The state object is
updated in place and returned (copying a state per event would double the cost of the
hot path); callers that need the old state keep its encoded bytes.

Every merge is commutative (counts add, first/last take min/max, flags are OR-ed), and
pruning only drops data that has left every window even for an event up to the allowed
lateness behind, so any arrival order within the lateness yields the same state.

Examples
--------
>>> from streams.contracts.events import ClickEvent
>>> s = update(None, ClickEvent(event_id="e1", user_id="u1", ts=3_600_000, schema_version=1,
...                             session_id="s1", action="add_to_cart", category="shoes"))
>>> s.events, s.sessions["s1"]
(1, [3600000, 3600000, 1, 1, 3600000])
"""

from __future__ import annotations

from dataclasses import dataclass

from models.text.result import ASPECTS, Analysis
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import ClickEvent, Event, OrderEvent, ReviewEvent
from streams.features.state import (
    DAY_MS,
    F_DELIVERED,
    F_PAID,
    F_PLACED,
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
    SOURCE_LLM,
    SOURCE_LOCAL,
    STATUS_FLAG,
    T_SOURCE,
    T_TS,
    UserState,
    orders_changed,
    texts_changed,
)

PURCHASE_FLAGS = F_PLACED | F_PAID | F_DELIVERED
# Pruning only drops data outside every window, so its cadence changes no feature;
# once a day of a user's event time bounds both the work and the extra memory.
PRUNE_EVERY_HOURS = 24
# Longest window over review texts (see streams.features.vector).
TEXT_WINDOW_MS = 90 * DAY_MS
_ASPECT_BIT = {a: 1 << i for i, a in enumerate(ASPECTS)}


@dataclass(frozen=True)
class FeatureConfig:
    """Retention knobs of the feature state.

    ``lateness_ms`` must equal the runner's allowed lateness: data is kept that long past
    the end of its longest window so a late event still finds its neighbours.
    """

    lateness_ms: int = 3_600_000
    cart_conversion_ms: int = 24 * HOUR_MS
    max_sessions: int = 2_000
    max_categories: int = 500
    max_orders: int = 2_000
    max_reviews: int = 1_000


DEFAULT_CONFIG = FeatureConfig()


def update(
    state: UserState | None, event: Event, config: FeatureConfig = DEFAULT_CONFIG, *,
    analysis: Analysis | None = None,
) -> UserState:
    """Return ``state`` with ``event`` folded in (a new state when ``state`` is None).

    ``analysis`` is the local text analysis of a review event; it becomes the review's
    text record unless an LLM analysis of the same review is already there.
    """
    if state is None:
        state = UserState(
            first_ts=event.ts_ms, last_ts=event.ts_ms, pruned_hour=event.ts_ms // HOUR_MS,
            click_min={}, click_hour={}, sessions={}, categories={}, orders={}, reviews=[],
            segments={}, exited={}, texts={},
        )
    ts: int = event.ts  # type: ignore[assignment]
    state.events += 1
    if ts < state.first_ts:
        state.first_ts = ts
    if ts > state.last_ts:
        state.last_ts = ts
    if isinstance(event, ClickEvent):
        _add_click(state, event, ts)
    elif isinstance(event, OrderEvent):
        _add_order(state, event, ts, config)
    elif isinstance(event, ReviewEvent):
        _add_review(state, event, ts)
        if analysis is not None:
            _add_text(state, event.event_id, ts, analysis, SOURCE_LOCAL, config)
    hour = state.last_ts // HOUR_MS
    if hour >= state.pruned_hour + PRUNE_EVERY_HOURS:
        prune(state, config)
        state.pruned_hour = hour
    return state


def _add_click(state: UserState, ev: ClickEvent, ts: int) -> None:
    m = ts // MINUTE_MS
    state.click_min[m] = state.click_min.get(m, 0) + 1
    h = ts // HOUR_MS
    rec = state.click_hour.get(h)
    if rec is None:
        rec = state.click_hour[h] = [0, 0, 0]
    rec[H_CLICKS] += 1
    is_atc = ev.action == "add_to_cart"
    if ev.action == "view":
        rec[H_VIEWS] += 1
    elif is_atc:
        rec[H_ATC] += 1
    s = state.sessions.get(ev.session_id)
    if s is None:
        state.sessions[ev.session_id] = [ts, ts, 1, int(is_atc), ts if is_atc else 0]
    else:
        if ts < s[S_FIRST]:
            s[S_FIRST] = ts
        if ts > s[S_LAST]:
            s[S_LAST] = ts
        s[S_CLICKS] += 1
        if is_atc:
            s[S_ATC] += 1
            if s[S_FIRST_ATC] == 0 or ts < s[S_FIRST_ATC]:
                s[S_FIRST_ATC] = ts
    if ev.category:
        _touch_category(state, ev.category, ts)


def _touch_category(state: UserState, category: str, ts: int) -> None:
    prev = state.categories.get(category)
    if prev is None or ts > prev:
        state.categories[category] = ts


def _add_order(state: UserState, ev: OrderEvent, ts: int, config: FeatureConfig) -> None:
    orders_changed(state)
    flag = STATUS_FLAG[ev.status]
    coupon = 1 if ev.coupon_code else 0
    payment = (ev.payment_method or "").lower()
    rec = state.orders.get(ev.order_id)
    if rec is None:
        rec = state.orders[ev.order_id] = [ts, ev.total, ev.discount, coupon, payment, 0]
    else:
        if ts < rec[O_FIRST_TS]:
            rec[O_FIRST_TS] = ts
        if ev.total > rec[O_TOTAL]:
            rec[O_TOTAL] = ev.total
        if ev.discount > rec[O_DISCOUNT]:
            rec[O_DISCOUNT] = ev.discount
        rec[O_COUPON] |= coupon
        if payment and (not rec[O_PAYMENT] or payment < rec[O_PAYMENT]):
            rec[O_PAYMENT] = payment
    was_purchase = rec[O_FLAGS] & PURCHASE_FLAGS
    rec[O_FLAGS] |= flag
    if rec[O_FLAGS] & PURCHASE_FLAGS:
        if not was_purchase:
            state.orders_lifetime += 1
        if state.first_order_ts == 0 or rec[O_FIRST_TS] < state.first_order_ts:
            state.first_order_ts = rec[O_FIRST_TS]
    for item in ev.items:
        if item.category:
            _touch_category(state, item.category, ts)


def _add_review(state: UserState, ev: ReviewEvent, ts: int) -> None:
    state.reviews.append([ts, ev.rating])
    state.reviews_lifetime += 1


def text_record(ts: int, analysis: Analysis, source: int) -> list[int]:
    """The compact per-review record (slots ``T_*`` of :mod:`streams.features.state`).

    >>> from models.text.result import AspectMention
    >>> text_record(5, Analysis(lang="en", sentiment=-0.5, label="negative", aspects=[
    ...     AspectMention(aspect="price", polarity="negative")]), 0)
    [5, -500, 2, 2, 0, 0]
    """
    mentioned = negative = positive = 0
    for m in analysis.aspects:
        bit = _ASPECT_BIT[m.aspect]
        mentioned |= bit
        if m.polarity == "negative":
            negative |= bit
        elif m.polarity == "positive":
            positive |= bit
    return [ts, round(analysis.sentiment * 1000), mentioned, negative, positive, source]


def _add_text(state: UserState, review_id: str, ts: int, analysis: Analysis, source: int,
              config: FeatureConfig) -> None:
    prev = state.texts.get(review_id)
    if prev is not None and prev[T_SOURCE] == SOURCE_LLM and source != SOURCE_LLM:
        return  # the LLM's analysis stands, whichever arrived first
    state.texts[review_id] = text_record(ts, analysis, source)
    texts_changed(state)
    if len(state.texts) > config.max_reviews:
        _cap(state.texts, config.max_reviews, lambda r: (r[T_TS], r[T_SOURCE]))


def apply_enrichment(
    state: UserState | None, enriched: EnrichedReview, config: FeatureConfig = DEFAULT_CONFIG
) -> UserState | None:
    """Replace a review's local text analysis with the LLM's (``shop.reviews.enriched``).

    Commutative with :func:`update`: the LLM record wins whether it arrives before or
    after the review itself. Local fallbacks (``source == "local"``) and results for
    reviews that left every text window change nothing. Returns ``None`` only when
    ``state`` is None and nothing was recorded.

    >>> from streams.contracts.events import ReviewEvent
    >>> from streams.contracts.enriched import EnrichedReview
    >>> ev = ReviewEvent(event_id="r1", user_id="u1", ts=1000, schema_version=1, rating=2,
    ...                  text="slow")
    >>> s = update(None, ev, analysis=Analysis(lang="en", sentiment=0.1, label="neutral"))
    >>> llm = EnrichedReview(event_id="r1", user_id="u1", ts=1000, source="llm",
    ...     analysis=Analysis(lang="en", sentiment=-0.6, label="negative"))
    >>> apply_enrichment(s, llm).texts["r1"]
    [1000, -600, 0, 0, 0, 1]
    """
    if enriched.source != "llm":
        return state
    ts = enriched.ts
    if state is None:
        state = UserState(first_ts=ts, last_ts=ts, pruned_hour=ts // HOUR_MS, click_min={},
                          click_hour={}, sessions={}, categories={}, orders={}, reviews=[],
                          segments={}, exited={}, texts={})
    elif ts <= state.last_ts - TEXT_WINDOW_MS - config.lateness_ms:
        return state
    _add_text(state, enriched.event_id, ts, enriched.analysis, SOURCE_LLM, config)
    return state


def prune(state: UserState, config: FeatureConfig = DEFAULT_CONFIG) -> None:
    """Drop data older than every window plus the allowed lateness, and enforce caps."""
    now = state.last_ts
    late = config.lateness_ms
    cut_min = (now - HOUR_MS - late) // MINUTE_MS
    for k in [k for k in state.click_min if k < cut_min]:
        del state.click_min[k]
    cut_hour = (now - 30 * DAY_MS - late) // HOUR_MS
    for k in [k for k in state.click_hour if k < cut_hour]:
        del state.click_hour[k]
    cut_30 = now - 30 * DAY_MS - late - config.cart_conversion_ms
    for sid in [sid for sid, s in state.sessions.items() if s[S_LAST] < cut_30]:
        del state.sessions[sid]
    for cat in [cat for cat, t in state.categories.items() if t < cut_30]:
        del state.categories[cat]
    cut_365 = now - 365 * DAY_MS - late
    expired = [oid for oid, o in state.orders.items() if o[O_FIRST_TS] < cut_365]
    if expired or len(state.orders) > config.max_orders:
        orders_changed(state)
    for oid in expired:
        del state.orders[oid]
    if any(r[0] < cut_365 for r in state.reviews):
        state.reviews = [r for r in state.reviews if r[0] >= cut_365]
    _cap(state.sessions, config.max_sessions, lambda s: s[S_LAST])
    _cap(state.categories, config.max_categories, lambda t: t)
    _cap(state.orders, config.max_orders, lambda o: o[O_FIRST_TS])
    if len(state.reviews) > config.max_reviews:
        state.reviews.sort()
        del state.reviews[: len(state.reviews) - config.max_reviews]
    if state.texts:
        cut_text = now - TEXT_WINDOW_MS - late
        expired_texts = [rid for rid, r in state.texts.items() if r[T_TS] < cut_text]
        for rid in expired_texts:
            del state.texts[rid]
        if expired_texts:
            texts_changed(state)


def _cap(d: dict, limit: int, key: object) -> None:
    if len(d) <= limit:
        return
    victims = sorted(d, key=lambda k: key(d[k]))[: len(d) - limit]  # type: ignore[operator]
    for k in victims:
        del d[k]
