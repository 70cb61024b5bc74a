"""Typed input contracts of the actions app: segment changes and churn alerts.

Both arrive as JSON keyed by ``user_id`` and are decoded once, here, into frozen msgspec
structs; the engine behind this boundary trusts every field. A message that fails is an
:class:`~streams.exceptions.InvalidEvent` with a bounded reason token, which the app sends
to the dead-letter topic with the original bytes.

Examples
--------
>>> raw = (b'{"event_id": "e1", "schema_version": 1, "user_id": "u1", "segment": "vip",'
...        b' "change": "entered", "at": "2026-09-11T23:27:18.951Z", "at_ms": 1789169238951,'
...        b' "reasons": [{"feature": "spend_365d", "op": ">=", "value": 1200.0,'
...        b' "threshold": 1000.0}], "segments": ["vip"]}')
>>> ch = decode_change(b"u1", raw, max_bytes=65536)
>>> (ch.segment, ch.change, ch.reasons[0].text)
('vip', 'entered', 'spend_365d=1200 >= 1000')
>>> decode_change(b"u2", raw, max_bytes=65536)
Traceback (most recent call last):
...
streams.exceptions.InvalidEvent: key_mismatch: message key 'u2' is not the user_id 'u1'
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

import msgspec
import orjson

from streams.exceptions import InvalidEvent

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$",
                                   max_length=64)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=7_258_118_400_000)]
Text = Annotated[str, msgspec.Meta(max_length=256)]

DLQ_REASONS = (
    "oversized", "empty", "malformed_json", "not_an_object", "unsupported_schema_version",
    "missing_field", "wrong_type", "out_of_range", "invalid_enum", "invalid_format",
    "missing_key", "key_mismatch",
)


def _num(v: float) -> str:
    return f"{v:g}"


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """Why a segment changed: one condition that held (``Reason.as_dict`` of the policy)."""

    feature: Annotated[str, msgspec.Meta(max_length=64)]
    op: Annotated[str, msgspec.Meta(max_length=2)] | None = None
    value: float | None = None
    threshold: float | None = None
    text: Text | None = None

    def __post_init__(self) -> None:
        if self.text is None and self.op and self.value is not None \
                and self.threshold is not None:
            msgspec.structs.force_setattr(
                self, "text", f"{self.feature}={_num(self.value)} {self.op} "
                              f"{_num(self.threshold)}")


class SegmentChange(msgspec.Struct, frozen=True, kw_only=True):
    """One ``segments.changes`` record: a user entered or left a segment, and why."""

    event_id: Id
    schema_version: int
    user_id: Id
    segment: Name
    change: Literal["entered", "exited"]
    at: Text
    at_ms: EpochMs
    reasons: Annotated[list[Reason], msgspec.Meta(max_length=64)] = []
    segments: Annotated[list[Name], msgspec.Meta(max_length=256)] = []
    scores: dict[Annotated[str, msgspec.Meta(max_length=64)], float | str | None] = {}
    policy_version: Text | None = None
    model_version: Text | None = None


class Contribution(msgspec.Struct, frozen=True, kw_only=True):
    """A feature's share of a churn score."""

    feature: Annotated[str, msgspec.Meta(max_length=64)]
    value: float | None = None
    contribution: float


class ChurnAlert(msgspec.Struct, frozen=True, kw_only=True):
    """One ``alerts.churn`` record: a user's churn tier rose."""

    event_id: Id
    schema_version: int
    user_id: Id
    at: Text
    at_ms: EpochMs
    tier: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    previous_tier: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    score: Annotated[float, msgspec.Meta(ge=0, le=1)]
    top_features: Annotated[list[Contribution], msgspec.Meta(max_length=64)] = []
    model_version: Text | None = None


T = TypeVar("T", SegmentChange, ChurnAlert)


def _reason_of(message: str) -> str:
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.startswith("Expected") and ("<=" in message or ">=" in message
                                           or "length" in message):
        return "out_of_range"
    if message.startswith("Expected `str` matching"):
        return "invalid_format"
    if message.startswith("Invalid enum value"):
        return "invalid_enum"
    return "wrong_type"


def _decode(key: bytes | None, value: bytes | None, max_bytes: int, cls: type[T]) -> T:
    if value is None or not value:
        raise InvalidEvent("empty", "message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("oversized", f"{len(value)} bytes > {max_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("malformed_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"top-level JSON is {type(obj).__name__}")
    version = obj.get("schema_version")
    if isinstance(version, int) and version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidEvent("unsupported_schema_version",
                           f"schema_version {version} (supported: "
                           f"{sorted(SUPPORTED_SCHEMA_VERSIONS)})")
    try:
        event = msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(_reason_of(str(exc)), str(exc)) from None
    if not key:
        raise InvalidEvent("missing_key", "message has no key (the user_id)")
    if key.decode("utf-8", "replace") != event.user_id:
        raise InvalidEvent("key_mismatch", f"message key {key.decode('utf-8', 'replace')!r} "
                                           f"is not the user_id {event.user_id!r}")
    return event


def decode_change(key: bytes | None, value: bytes | None, max_bytes: int) -> SegmentChange:
    """Decode one ``segments.changes`` message or raise :class:`InvalidEvent`."""
    return _decode(key, value, max_bytes, SegmentChange)


def decode_churn_alert(key: bytes | None, value: bytes | None, max_bytes: int) -> ChurnAlert:
    """Decode one ``alerts.churn`` message or raise :class:`InvalidEvent`.

    >>> decode_churn_alert(b"u1", b'{"event_id": "a", "schema_version": 2}', 1024)
    Traceback (most recent call last):
    ...
    streams.exceptions.InvalidEvent: unsupported_schema_version: schema_version 2 (supported: [1])
    """
    return _decode(key, value, max_bytes, ChurnAlert)
