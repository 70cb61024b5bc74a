"""The decode boundary: raw Kafka bytes in, a typed event or an :class:`InvalidEvent` out.

Every check an event must pass happens here, once, so that the feature code behind it
never defends against bad data. Each failure carries a bounded ``reason`` token; the
runner sends the original bytes with that reason to the dead-letter topic.

Reasons
-------
``oversized``, ``empty``, ``malformed_json``, ``not_an_object``, ``unknown_type``,
``unsupported_schema_version``, ``missing_field``, ``wrong_type``, ``out_of_range``,
``invalid_enum``, ``invalid_format``, ``bad_timestamp``, ``future_timestamp``, ``missing_key``,
``key_mismatch`` (and ``late``, decided by the processor, not here).

Examples
--------
>>> d = EventDecoder(max_bytes=1024, min_ts_ms=0, max_future_skew_ms=60_000,
...                  topic_types={"shop.clicks": "click"})
>>> d.decode("shop.clicks", b"u1", b'[1, 2]', now_ms=0)
Traceback (most recent call last):
...
streams.exceptions.InvalidEvent: not_an_object: top-level JSON is list
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import msgspec
import orjson

from streams.config import Settings
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import EVENT_TYPES, SUPPORTED_SCHEMA_VERSIONS, Event
from streams.contracts.scoring import ScoringRequest
from streams.exceptions import InvalidEvent

DLQ_REASONS = (
    "oversized", "empty", "malformed_json", "not_an_object", "unknown_type",
    "unsupported_schema_version", "missing_field", "wrong_type", "out_of_range",
    "invalid_enum", "invalid_format", "bad_timestamp", "future_timestamp", "missing_key",
    "key_mismatch", "late",
)


class EventDecoder:
    """Decode and validate one message.

    Parameters
    ----------
    max_bytes
        Messages larger than this are refused before parsing (``oversized``).
    min_ts_ms, max_future_skew_ms
        Timestamps before ``min_ts_ms`` or more than the skew ahead of the wall clock are
        not sane (``bad_timestamp`` / ``future_timestamp``).
    topic_types
        The event type implied by each input topic when a message has no ``type`` field.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        min_ts_ms: int,
        max_future_skew_ms: int,
        topic_types: Mapping[str, str],
    ) -> None:
        self.max_bytes = max_bytes
        self.min_ts_ms = min_ts_ms
        self.max_future_skew_ms = max_future_skew_ms
        self.topic_types = dict(topic_types)
        # One-pass typed decoders for the type a topic implies (see ``decode_value``).
        self._fast = {topic: msgspec.json.Decoder(EVENT_TYPES[etype])
                      for topic, etype in self.topic_types.items() if etype in EVENT_TYPES}

    @classmethod
    def from_settings(cls, settings: Settings) -> EventDecoder:
        t = settings.topics
        min_ts = datetime(settings.min_event_year, 1, 1, tzinfo=UTC)
        return cls(
            max_bytes=settings.max_event_bytes,
            min_ts_ms=int(min_ts.timestamp() * 1000),
            max_future_skew_ms=settings.max_future_skew_s * 1000,
            topic_types={t.clicks: "click", t.orders: "order", t.reviews: "review"},
        )

    def decode(self, topic: str, key: bytes | None, value: bytes | None, now_ms: int) -> Event:
        """Return the typed event or raise :class:`InvalidEvent`.

        The message key must equal the ``user_id``: the state of a user lives on the
        partition its key hashes to, so a mis-keyed event would split that state.
        """
        event = self.decode_value(topic, value, now_ms)
        _check_key(key, event.user_id)
        return event

    def decode_value(self, topic: str, value: bytes | None, now_ms: int) -> Event:
        """Decode and validate a message body alone (files have no message key)."""
        if value is None or len(value) == 0:
            raise InvalidEvent("empty", "message has no value")
        if len(value) > self.max_bytes:
            raise InvalidEvent(
                "oversized", f"{len(value)} bytes exceeds the limit of {self.max_bytes}"
            )
        fast = self._fast.get(topic)
        if fast is not None:
            # Fast path: parse straight into the struct the topic implies. Anything it
            # refuses (another type, a bad field, broken JSON) takes the general path
            # below, which names the reason.
            try:
                return self._checked(fast.decode(value), now_ms)
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent("malformed_json", str(exc)) from None
        if not isinstance(data, dict):
            raise InvalidEvent("not_an_object", f"top-level JSON is {type(data).__name__}")
        etype = data.get("type") or self.topic_types.get(topic)
        cls = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
        if cls is None:
            raise InvalidEvent(
                "unknown_type", f"event type {etype!r} is not one of {sorted(EVENT_TYPES)}"
            )
        if "type" not in data:
            data["type"] = etype
        version = data.get("schema_version")
        if isinstance(version, int) and version not in SUPPORTED_SCHEMA_VERSIONS:
            raise InvalidEvent(
                "unsupported_schema_version",
                f"schema_version {version} (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})",
            )
        try:
            event: Event = msgspec.convert(data, cls, strict=True)
        except msgspec.ValidationError as exc:
            raise InvalidEvent(_reason_of(str(exc)), str(exc)) from None
        return self._checked(event, now_ms)

    def _checked(self, event: Event, now_ms: int) -> Event:
        ts = event.ts_ms
        if ts < self.min_ts_ms:
            raise InvalidEvent("bad_timestamp", f"ts {ts} is before the earliest allowed time")
        if ts > now_ms + self.max_future_skew_ms:
            raise InvalidEvent(
                "future_timestamp", f"ts {ts} is {(ts - now_ms) // 1000}s ahead of the clock"
            )
        return event


def decode_enriched(key: bytes | None, value: bytes | None, max_bytes: int) -> EnrichedReview:
    """Decode a ``shop.reviews.enriched`` record, or raise :class:`InvalidEvent`.

    Same reasons as input events; the key must be the ``user_id`` (co-partitioning).
    """
    if value is None or len(value) == 0:
        raise InvalidEvent("empty", "message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("oversized", f"{len(value)} bytes exceeds the limit of {max_bytes}")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("malformed_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEvent("not_an_object", f"top-level JSON is {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and version != 1:
        raise InvalidEvent("unsupported_schema_version",
                           f"schema_version {version} (supported: [1])")
    try:
        record = msgspec.convert(data, EnrichedReview, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_reason_of(str(exc)), str(exc)) from None
    _check_key(key, record.user_id)
    return record


class ScoringDecoder:
    """The decode boundary of the scoring stage: ``segstream.scoring`` records.

    Written by the event worker, so a bad record means a version skew or a foreign
    producer; it is dead-lettered like a bad input event, with the same reasons.

    >>> d = ScoringDecoder(max_bytes=4096)
    >>> d.decode("segstream.scoring", b"u1", b'{"event_id": "t|0|1"}', 0)
    Traceback (most recent call last):
    ...
    streams.exceptions.InvalidEvent: missing_field: Object missing required field `user_id`
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._decoder = msgspec.json.Decoder(ScoringRequest)

    def decode(self, topic: str, key: bytes | None, value: bytes | None,
               now_ms: int) -> ScoringRequest:
        if value is None or len(value) == 0:
            raise InvalidEvent("empty", "message has no value")
        if len(value) > self.max_bytes:
            raise InvalidEvent("oversized",
                               f"{len(value)} bytes exceeds the limit of {self.max_bytes}")
        try:
            req = self._decoder.decode(value)
        except msgspec.ValidationError as exc:
            raise InvalidEvent(_reason_of(str(exc)), str(exc)) from None
        except msgspec.DecodeError as exc:
            raise InvalidEvent("malformed_json", str(exc)) from None
        _check_key(key, req.user_id)
        return req


def _check_key(key: bytes | None, user_id: str) -> None:
    """The key must be the ``user_id``: a user's state lives on the partition its key
    hashes to, so a mis-keyed record would split that state."""
    if key is None:
        raise InvalidEvent("missing_key", "message key must be the user_id")
    if key != user_id.encode():
        raise InvalidEvent("key_mismatch",
                           "message key differs from user_id; state would be split")


def _reason_of(message: str) -> str:
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.startswith("Invalid enum value"):
        return "invalid_enum"
    if message.startswith("ts ") or "`$.ts`" in message:
        return "bad_timestamp"
    if message.startswith("Expected `") and any(op in message for op in (">=", "<=", " > ",
                                                                        " < ", "length")):
        return "out_of_range"
    if "matching regex" in message:
        return "invalid_format"
    return "wrong_type"
