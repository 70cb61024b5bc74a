"""Typed input event contracts (schema version 1).

Events are JSON objects, one per Kafka message, keyed by ``user_id``. They are decoded
once at the boundary (:mod:`streams.contracts.decode`) into these frozen structs; all
code behind the boundary may trust every field. ``ts`` arrives as RFC 3339 text or epoch
milliseconds and is normalised to epoch milliseconds (``int``) during decoding.

Unknown extra fields are ignored so producers can add fields before consumers know them.

Examples
--------
>>> import msgspec
>>> ev = msgspec.convert({"type": "click", "event_id": "e1", "user_id": "u1",
...                      "ts": "2026-01-01T00:00:00Z", "schema_version": 1,
...                      "session_id": "s1", "action": "view"}, ClickEvent)
>>> ev.ts
1767225600000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=128)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
ClickAction = Literal["view", "search", "add_to_cart", "remove_from_cart", "wishlist"]
OrderStatus = Literal["placed", "paid", "cancelled", "refunded", "delivered"]

# Bounds every timestamp must satisfy regardless of configuration (year 1970..2200).
_TS_MIN_MS = 0
_TS_MAX_MS = 7_258_118_400_000


def parse_ts(value: int | str) -> int:
    """Return epoch milliseconds for an RFC 3339 string or an epoch-ms integer.

    >>> parse_ts("2011-12-09T12:50:00+00:00")
    1323435000000
    >>> parse_ts(1323435000000)
    1323435000000
    """
    if isinstance(value, int):
        ms = value
    else:
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value!r} is neither RFC 3339 nor epoch milliseconds") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {value!r} has no timezone offset (RFC 3339 requires one)")
        ms = int(dt.astimezone(UTC).timestamp() * 1000)
    if not _TS_MIN_MS <= ms <= _TS_MAX_MS:
        raise ValueError(f"ts {value!r} is outside 1970..2200 (epoch ms expected)")
    return ms


class _Base(msgspec.Struct, frozen=True, kw_only=True):
    event_id: Id
    user_id: Id
    ts: int | str
    schema_version: int

    def __post_init__(self) -> None:
        if self.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported "
                f"(supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
            )
        msgspec.structs.force_setattr(self, "ts", parse_ts(self.ts))

    @property
    def ts_ms(self) -> int:
        """Event time in epoch milliseconds (always an ``int`` after decoding)."""
        return self.ts  # type: ignore[return-value]


class ClickEvent(_Base, frozen=True, kw_only=True):
    """A behavioural event on the shop front: a page view, search, cart change."""

    type: Literal["click"] = "click"
    session_id: Id
    action: ClickAction
    product_id: ShortText | None = None
    category: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    price: Money | None = None
    query: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    product_id: Id
    category: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    unit_price: Money


class OrderEvent(_Base, frozen=True, kw_only=True):
    """One status change of an order; several events share an ``order_id``."""

    type: Literal["order"] = "order"
    order_id: Id
    status: OrderStatus
    items: Annotated[list[OrderItem], msgspec.Meta(max_length=1000)] = []
    total: Money
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    discount: Money = 0.0
    coupon_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    payment_method: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class ReviewEvent(_Base, frozen=True, kw_only=True):
    """A product review with its star rating and free text."""

    type: Literal["review"] = "review"
    order_id: Id | None = None
    product_id: Id | None = None
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]
    text: Annotated[str, msgspec.Meta(max_length=10_000)] = ""
    lang: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")] | None = None


Event = ClickEvent | OrderEvent | ReviewEvent

EVENT_TYPES: dict[str, type[ClickEvent] | type[OrderEvent] | type[ReviewEvent]] = {
    "click": ClickEvent,
    "order": OrderEvent,
    "review": ReviewEvent,
}
