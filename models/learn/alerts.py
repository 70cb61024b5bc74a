"""The ``alerts.churn`` record, built by a pure function so its contract is testable.

Why deterministic ids: the worker publishes at-least-once; the actions service
de-duplicates by ``event_id``, which therefore depends only on the user, the time and the
model version, never on when or how often the record was produced.

Examples
--------
>>> a = churn_alert("u1", 1_788_779_007_980, 0.8312, "medium",
...                 [{"feature": "recency_days", "value": 74.0, "contribution": 0.41}],
...                 "suite-3-0badc0de")
>>> a["tier"], a["previous_tier"], a["score"], a["at"]
('high', 'medium', 0.8312, '2026-09-07T11:03:27.980Z')
>>> a["event_id"] == churn_alert("u1", 1_788_779_007_980, 0.5, None, [], "suite-3-0badc0de")[
...     "event_id"]
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def churn_alert(user_id: str, at_ms: int, score: float, previous_tier: str | None,
                top_features: Sequence[dict[str, Any]], model_version: str
                ) -> dict[str, Any]:
    """The record published when a user enters the high churn-risk tier."""
    raw = f"alerts.churn|{user_id}|{at_ms}|{model_version}"
    at = datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return {
        "event_id": hashlib.blake2b(raw.encode(), digest_size=16).hexdigest(),
        "schema_version": 1,
        "user_id": user_id,
        "at": at.replace("+00:00", "Z"),
        "at_ms": at_ms,
        "tier": "high",
        "previous_tier": previous_tier,
        "score": round(score, 4),
        "top_features": [
            {"feature": t["feature"],
             "value": None if t.get("value") is None else float(t["value"]),
             "contribution": round(float(t["contribution"]), 4)}
            for t in top_features
        ],
        "model_version": model_version,
    }
