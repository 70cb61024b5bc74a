import orjson
import pytest

from streams.actions.contracts import DLQ_REASONS, decode_change, decode_churn_alert
from streams.exceptions import InvalidEvent

CHANGE = {"event_id": "e1", "schema_version": 1, "user_id": "u1", "segment": "churn_risk.high",
          "change": "entered", "at": "2026-09-11T23:27:18.951Z", "at_ms": 1789169238951,
          "reasons": [{"feature": "coupon_share_365d", "op": ">=", "threshold": 0.5,
                       "value": 0.5, "text": "coupon_share_365d=0.5 >= 0.5"}],
          "segments": ["churn_risk.high", "cluster.3"],
          "scores": {"churn": 0.81, "value": 312.5, "cluster": 3}, "policy_version": "p",
          "model_version": None, "source": {"topic": "shop.orders", "partition": 1}}


def test_a_worker_change_decodes_with_its_fields():
    ch = decode_change(b"u1", orjson.dumps(CHANGE), 65536)
    assert ch.segment == "churn_risk.high" and ch.scores["cluster"] == 3
    assert ch.reasons[0].text == "coupon_share_365d=0.5 >= 0.5"


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"u1", None, "empty"),
    (b"u1", b"x" * 70_000, "oversized"),
    (b"u1", b"{not json", "malformed_json"),
    (b"u1", b"[1]", "not_an_object"),
    (b"u1", {**CHANGE, "schema_version": 9}, "unsupported_schema_version"),
    (b"u1", {k: v for k, v in CHANGE.items() if k != "at_ms"}, "missing_field"),
    (b"u1", {**CHANGE, "at_ms": "soon"}, "wrong_type"),
    (b"u1", {**CHANGE, "at_ms": -5}, "out_of_range"),
    (b"u1", {**CHANGE, "change": "joined"}, "invalid_enum"),
    (b"u1", {**CHANGE, "segment": "Bad Name"}, "invalid_format"),
    (None, CHANGE, "missing_key"),
    (b"u2", CHANGE, "key_mismatch"),
])
def test_invalid_changes_get_a_bounded_reason(key, value, reason):
    raw = orjson.dumps(value) if isinstance(value, dict) else value
    with pytest.raises(InvalidEvent) as err:
        decode_change(key, raw, 65536)
    assert err.value.reason == reason
    assert reason in DLQ_REASONS


def test_churn_alert_score_must_be_a_probability():
    alert = {"event_id": "a", "schema_version": 1, "user_id": "u1", "at": "x", "at_ms": 1,
             "tier": "high", "score": 1.5}
    with pytest.raises(InvalidEvent) as err:
        decode_churn_alert(b"u1", orjson.dumps(alert), 65536)
    assert err.value.reason == "out_of_range"
