"""The decode boundary: every kind of bad input maps to its own DLQ reason."""

from __future__ import annotations

import orjson
import pytest

from streams.config import Settings
from streams.contracts.decode import DLQ_REASONS, EventDecoder
from streams.contracts.events import ClickEvent, OrderEvent, ReviewEvent, parse_ts
from streams.exceptions import InvalidEvent

NOW = 1_764_806_400_000  # 2025-12-04


@pytest.fixture
def decoder() -> EventDecoder:
    return EventDecoder.from_settings(Settings.from_env({}))


def click(**kw):
    ev = {"event_id": "e1", "user_id": "u1", "ts": NOW - 1000, "schema_version": 1,
          "session_id": "s1", "action": "view", "product_id": "p1", "category": "shoes",
          "price": 19.99}
    ev.update(kw)
    return ev


def order(**kw):
    ev = {"event_id": "e2", "user_id": "u1", "ts": "2025-12-03T10:00:00Z", "schema_version": 1,
          "order_id": "o1", "status": "placed", "total": 42.5, "currency": "EUR",
          "items": [{"product_id": "p1", "category": "shoes", "quantity": 2,
                     "unit_price": 21.25}],
          "discount": 5, "coupon_code": "WELCOME", "payment_method": "card"}
    ev.update(kw)
    return ev


def review(**kw):
    ev = {"event_id": "e3", "user_id": "u1", "ts": NOW, "schema_version": 1, "rating": 4,
          "text": "快递很快，质量不错", "lang": "zh", "product_id": "p1"}
    ev.update(kw)
    return ev


def reason(decoder, topic, value, key=b"u1"):
    with pytest.raises(InvalidEvent) as info:
        decoder.decode(topic, key, value, NOW)
    assert info.value.reason in DLQ_REASONS
    return info.value.reason


def test_valid_events_decode_to_typed_structs(decoder):
    c = decoder.decode("shop.clicks", b"u1", orjson.dumps(click()), NOW)
    o = decoder.decode("shop.orders", b"u1", orjson.dumps(order()), NOW)
    r = decoder.decode("shop.reviews", b"u1", orjson.dumps(review()), NOW)
    assert isinstance(c, ClickEvent) and c.ts == NOW - 1000 and c.price == 19.99
    assert isinstance(o, OrderEvent) and o.ts == 1_764_756_000_000 and o.items[0].quantity == 2
    assert isinstance(r, ReviewEvent) and r.rating == 4 and r.text.startswith("快递")


def test_type_field_overrides_topic_and_unknown_fields_are_ignored(decoder):
    ev = decoder.decode("shop.clicks", b"u1", orjson.dumps(order(type="order", extra=1)), NOW)
    assert isinstance(ev, OrderEvent)


def test_integer_money_is_accepted(decoder):
    ev = decoder.decode("shop.orders", b"u1", orjson.dumps(order(total=40)), NOW)
    assert ev.total == 40.0


@pytest.mark.parametrize(
    ("topic", "value", "expected"),
    [
        ("shop.clicks", b"{not json", "malformed_json"),
        ("shop.clicks", b"\x00\x01\x02\xff\xfe binary", "malformed_json"),
        ("shop.clicks", b"[1, 2]", "not_an_object"),
        ("shop.clicks", b"", "empty"),
        ("shop.clicks", orjson.dumps(click(type="pageview")), "unknown_type"),
        ("other.topic", orjson.dumps({k: v for k, v in click().items() if k != "type"}),
         "unknown_type"),
        ("shop.clicks", orjson.dumps(click(schema_version=9)), "unsupported_schema_version"),
        ("shop.clicks", orjson.dumps({k: v for k, v in click().items() if k != "session_id"}),
         "missing_field"),
        ("shop.clicks", orjson.dumps({k: v for k, v in click().items() if k != "user_id"}),
         "missing_field"),
        ("shop.clicks", orjson.dumps(click(price="12.00")), "wrong_type"),
        ("shop.clicks", orjson.dumps(click(session_id=12)), "wrong_type"),
        ("shop.clicks", orjson.dumps(click(price=-1)), "out_of_range"),
        ("shop.clicks", orjson.dumps(click(action="teleport")), "invalid_enum"),
        ("shop.orders", orjson.dumps(order(status="lost")), "invalid_enum"),
        ("shop.orders", orjson.dumps(order(currency="euro")), "invalid_format"),
        ("shop.orders", orjson.dumps(order(items=[{"product_id": "p", "quantity": 0,
                                                   "unit_price": 1}])), "out_of_range"),
        ("shop.reviews", orjson.dumps(review(rating=6)), "out_of_range"),
        ("shop.reviews", orjson.dumps(review(rating=4.5)), "wrong_type"),
        ("shop.clicks", orjson.dumps(click(ts="last tuesday")), "bad_timestamp"),
        ("shop.clicks", orjson.dumps(click(ts="2025-12-03T10:00:00")), "bad_timestamp"),
        ("shop.clicks", orjson.dumps(click(ts=True)), "bad_timestamp"),
        ("shop.clicks", orjson.dumps(click(ts=946_684_799_000 - 1)), "bad_timestamp"),
        ("shop.clicks", orjson.dumps(click(ts=NOW + 3_600_000)), "future_timestamp"),
        ("shop.clicks", orjson.dumps(click(user_id="")), "out_of_range"),
    ],
)
def test_invalid_messages_get_a_precise_reason(decoder, topic, value, expected):
    assert reason(decoder, topic, value) == expected


def test_oversized_message_is_refused_before_parsing(decoder):
    big = orjson.dumps(review(text="x" * 9000, extra="y" * 70_000))
    assert reason(decoder, "shop.reviews", big) == "oversized"


def test_key_must_be_the_user_id(decoder):
    assert reason(decoder, "shop.clicks", orjson.dumps(click()), key=None) == "missing_key"
    assert reason(decoder, "shop.clicks", orjson.dumps(click()), key=b"u2") == "key_mismatch"


def test_detail_names_the_field(decoder):
    with pytest.raises(InvalidEvent) as info:
        decoder.decode("shop.clicks", b"u1", orjson.dumps(click(price="x")), NOW)
    assert "$.price" in info.value.detail


def test_parse_ts_accepts_offsets_and_epoch_ms():
    assert parse_ts("2011-12-09T12:50:00+01:00") == parse_ts("2011-12-09T11:50:00Z")
    assert parse_ts(1323431400000) == parse_ts("2011-12-09T11:50:00Z")
    with pytest.raises(ValueError):
        parse_ts(-5)


def test_typed_fast_path_agrees_with_the_general_path(decoder):
    """The per-topic one-pass decoder and the general path give equal structs."""
    from streams.sim.generator import generate

    sim = generate(50, 3000, seed=3, end_ms=NOW - 60_000)
    topic = {"click": "shop.clicks", "order": "shop.orders", "review": "shop.reviews"}
    n = 0
    for ev in sim.events():
        raw = orjson.dumps(ev)
        fast = decoder.decode_value(topic[ev["type"]], raw, NOW)
        general = decoder.decode_value("not-an-input-topic", raw, NOW)
        assert fast == general
        n += 1
    assert n == 3000
    # a missing type is implied by the topic on both paths
    raw = orjson.dumps({k: v for k, v in click().items() if k != "type"})
    assert isinstance(decoder.decode_value("shop.clicks", raw, NOW), ClickEvent)
