"""The right-to-be-forgotten request (topic ``user.erase``) and its audit record.

A request is keyed by ``user_id`` like the shop events, so it lands on the partition that
holds the user's state. It is ordered with the user's events by ``requested_at``: events
up to that time are folded in and then deleted with the state; anything later starts a
fresh state.

Examples
--------
>>> req = decode_erase(b'{"schema_version": 1, "type": "user.erase", "request_id": "r1",'
...                    b' "user_id": "u1", "requested_at": "2026-12-01T00:00:00Z"}')
>>> req.user_id, req.ts_ms
('u1', 1796083200000)
>>> decode_erase(b'{"type": "user.erase"}')
Traceback (most recent call last):
...
streams.exceptions.InvalidEvent: schema: Object missing required field `schema_version`
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from streams.contracts.events import Id, parse_ts
from streams.exceptions import InvalidEvent


class EraseRequest(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: Literal[1]
    type: Literal["user.erase"] = "user.erase"
    request_id: Id
    user_id: Id
    requested_at: int | str
    requested_by: str | None = None

    @property
    def ts_ms(self) -> int:
        return parse_ts(self.requested_at)


_decoder = msgspec.json.Decoder(EraseRequest)


def decode_erase(value: bytes | None) -> EraseRequest:
    """Decode and validate a request; raise :class:`InvalidEvent` naming what is wrong."""
    if value is None:
        raise InvalidEvent("empty", "erase request without a value")
    try:
        req = _decoder.decode(value)
        req.ts_ms  # noqa: B018 - validates the timestamp
    except msgspec.ValidationError as exc:
        raise InvalidEvent("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("malformed", str(exc)) from None
    except ValueError as exc:
        raise InvalidEvent("bad_timestamp", str(exc)) from None
    return req


def erase_request(user_id: str, request_id: str, requested_at_ms: int,
                  requested_by: str | None = None) -> bytes:
    """Encode a request (the ``segstream erase`` command and tests use this)."""
    return msgspec.json.encode(EraseRequest(
        schema_version=1, request_id=request_id, user_id=user_id,
        requested_at=requested_at_ms, requested_by=requested_by))


def audit_record(req: EraseRequest, *, partition: int, had_state: bool,
                 segments: list[str], done_at: str, instance: str, stage: str = "events",
                 current_topic: str = "segments.current") -> dict[str, Any]:
    """What the compliance trail keeps: the subject only as a hash, what was deleted.

    With a separate scoring stage each stage erases what it holds and writes its own
    record (``stage``: ``events`` or ``scoring``), so a request is complete when both
    have."""
    return {
        "schema_version": 1,
        "type": "user.erased",
        "request_id": req.request_id,
        "subject_sha256": hashlib.sha256(req.user_id.encode()).hexdigest(),
        "requested_at": req.requested_at,
        "requested_by": req.requested_by,
        "completed_at": done_at,
        "partition": partition,
        "had_state": had_state,
        "segments_removed": len(segments),
        "deleted": ["state", "changelog", current_topic, "pending_labels", "timers"],
        "worker": instance,
        "stage": stage,
    }
