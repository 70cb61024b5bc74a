"""Per-user feature state: compact, serialisable, and independent of arrival order.

The state holds *commutative* summaries (bucketed counts, per-session and per-order
records merged with ``min``/``max``/``or``), never running sums that depend on the
order events arrived in. That is what makes an out-of-order stream (within the allowed
lateness) produce exactly the features of the same events in order.

Encoding is msgpack through msgspec: a user's state is typically a few hundred bytes and
encodes/decodes in a few microseconds, which matters because the runner reads and writes
it for every event.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

STATE_VERSION = 1

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Order record slots (lists keep the msgpack encoding small).
O_FIRST_TS, O_TOTAL, O_DISCOUNT, O_COUPON, O_PAYMENT, O_FLAGS = range(6)
# Order flags (bitmask): a status seen at least once for the order.
F_PLACED, F_PAID, F_CANCELLED, F_REFUNDED, F_DELIVERED = 1, 2, 4, 8, 16
STATUS_FLAG = {
    "placed": F_PLACED,
    "paid": F_PAID,
    "cancelled": F_CANCELLED,
    "refunded": F_REFUNDED,
    "delivered": F_DELIVERED,
}
# Session record slots.
S_FIRST, S_LAST, S_CLICKS, S_ATC, S_FIRST_ATC = range(5)
# Hourly click record slots: all clicks, views, add_to_cart.
H_CLICKS, H_VIEWS, H_ATC = range(3)
# Review text record slots: review time, sentiment in thousandths (-1000..1000), bitmasks
# over models.text.result.ASPECTS (bit i = ASPECTS[i]) of the aspects mentioned, raised
# negatively and raised positively, and who analysed it.
T_TS, T_SCORE, T_MENTIONED, T_NEGATIVE, T_POSITIVE, T_SOURCE = range(6)
SOURCE_LOCAL, SOURCE_LLM = 0, 1


class UserState(msgspec.Struct, kw_only=True, omit_defaults=True, dict=True):
    """Everything segstream remembers about one user.

    Keys of the bucket maps are bucket numbers (``ts // bucket_ms``).

    ``dict=True`` only serves :attr:`_orders_cache`, a derived value that lives in the
    instance ``__dict__``: it is never encoded, compared or copied, so a decoded or copied
    state simply starts without it. Code that changes :attr:`orders` must call
    :func:`orders_changed` (``update`` and ``prune`` do).
    """

    # Order-window features memoised by ``vector`` (see ``streams.features.vector``).
    _orders_cache: ClassVar[Any] = None
    # Review-text features memoised by ``vector`` the same way (see ``texts_changed``).
    _texts_cache: ClassVar[Any] = None

    v: int = STATE_VERSION
    first_ts: int = 0
    last_ts: int = 0
    pruned_hour: int = 0
    events: int = 0
    click_min: dict[int, int] = {}
    click_hour: dict[int, list[int]] = {}
    sessions: dict[str, list[int]] = {}
    categories: dict[str, int] = {}
    orders: dict[str, list] = {}
    orders_lifetime: int = 0
    first_order_ts: int = 0
    reviews: list[list[int]] = []
    reviews_lifetime: int = 0
    # segment name -> [since_ts, last_change_ts]; present only while a member
    segments: dict[str, list[int]] = {}
    # segment name -> ts of the last exit (for the dwell time before re-entry)
    exited: dict[str, int] = {}
    # review event_id -> text record (slots T_*); the LLM's analysis replaces the local
    # one for the same review whichever arrives first. Added after the fields above so
    # states stored before it still decode.
    texts: dict[str, list[int]] = {}
    # recent input event ids as [ts, event_id], for de-duplication within a bounded window
    seen: list[list[Any]] = []
    # label snapshots waiting for their horizon (encoding owned by models.learn.labels)
    pending: list[list[Any]] = []
    # event time of the next time-based re-evaluation (0: none armed)
    timer_due: int = 0
    # the last model scores and the inputs they came from (models.learn debouncing)
    scored: list[Any] = []
    # behavioural cluster used by the segment rules: [cluster id, since ts]
    cluster: list[int] = []
    # with a separate scoring stage, what the event worker last sent it to score:
    # [sent_at_ms, *x] (streams.runtime.feed)
    fed: list[Any] = []


def texts_changed(state: UserState) -> None:
    """Forget what was derived from ``state.texts`` (call after changing a text record)."""
    state.__dict__.pop("_texts_cache", None)


def orders_changed(state: UserState) -> None:
    """Forget what was derived from ``state.orders`` (call after changing an order)."""
    state.__dict__.pop("_orders_cache", None)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    return _encoder.encode(state)


def decode_state(data: bytes) -> UserState:
    return _decoder.decode(data)
