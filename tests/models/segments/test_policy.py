"""Segment rules: parsing with clear errors, hysteresis, dwell time, reasons."""

from __future__ import annotations

import pytest

from models.exceptions import PolicyError
from models.segments.policy import SegmentPolicy, parse_duration
from streams.features.vector import FEATURE_NAMES

DAY = 86_400_000


def policy(**segments):
    return SegmentPolicy.from_dict({"version": "t", "segments": segments}, FEATURE_NAMES)


VIP = {"enter": {"all": ["spend_365d >= 1000", "orders_365d >= 3"]},
       "exit": {"any": ["spend_365d < 700", "orders_365d < 2"]}, "min_dwell": "7d"}


def test_default_policy_loads_and_has_the_required_segments():
    p = SegmentPolicy.load(None, FEATURE_NAMES)
    names = {r.name for r in p.rules}
    assert {"vip", "high_activity", "price_sensitive", "new_customer", "dormant"} <= names
    assert p.version


def test_enter_reports_every_condition_with_value_and_threshold():
    p = policy(vip=VIP)
    members, exited = {}, {}
    [ch] = p.evaluate(members, exited, {"spend_365d": 1500.0, "orders_365d": 4.0}, 0)
    assert ch.change == "entered"
    assert [(r.feature, r.op, r.value, r.threshold) for r in ch.reasons] == [
        ("spend_365d", ">=", 1500.0, 1000.0), ("orders_365d", ">=", 4.0, 3.0)]
    assert members == {"vip": [0, 0]}


def test_hysteresis_band_and_dwell_prevent_flapping():
    p = policy(vip=VIP)
    members, exited = {}, {}
    assert p.evaluate(members, exited, {"spend_365d": 1000.0, "orders_365d": 3.0}, 0)
    # below the enter threshold but above the exit one: stays
    assert p.evaluate(members, exited, {"spend_365d": 800.0, "orders_365d": 3.0}, 10 * DAY) == []
    # exit condition holds but the dwell time has not passed
    assert p.evaluate(members, exited, {"spend_365d": 100.0, "orders_365d": 3.0}, 6 * DAY) == []
    [ch] = p.evaluate(members, exited, {"spend_365d": 100.0, "orders_365d": 3.0}, 8 * DAY)
    assert ch.change == "exited" and ch.since == 0
    assert [r.feature for r in ch.reasons] == ["spend_365d"]
    # re-entry waits for the dwell time too
    rich = {"spend_365d": 5000.0, "orders_365d": 9.0}
    assert p.evaluate(members, exited, rich, 9 * DAY) == []
    assert p.evaluate(members, exited, rich, 15 * DAY + 1)[0].change == "entered"


def test_missing_features_never_satisfy_a_condition():
    p = policy(dormant={"enter": ["recency_days >= 60"], "exit": ["recency_days < 60"]})
    assert p.evaluate({}, {}, {"recency_days": None}, 0) == []


def test_nested_any_inside_all():
    p = policy(ps={"enter": {"all": ["orders_365d >= 2", {"any": ["coupon_share_365d >= 0.5",
                                                                    "avg_discount_365d >= 0.2"]}]},
                   "exit": ["coupon_share_365d < 0.3"]})
    assert p.evaluate({}, {}, {"orders_365d": 2.0, "coupon_share_365d": 0.1,
                               "avg_discount_365d": 0.25}, 0)[0].change == "entered"
    assert p.evaluate({}, {}, {"orders_365d": 2.0, "coupon_share_365d": 0.1,
                               "avg_discount_365d": 0.1}, 0) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"enter": ["spend_356d >= 1"], "exit": ["spend_365d < 1"]},
         "unknown feature 'spend_356d'"),
        ({"enter": ["spend_365d => 1"], "exit": ["spend_365d < 1"]}, "is not 'feature OP number'"),
        ({"enter": ["spend_365d >= 1"]}, "exit: missing"),
        ({"enter": ["spend_365d >= 1"], "exit": ["spend_365d < 1"], "min_dwell": "soon"},
         "not a duration"),
        ({"enter": ["spend_365d >= 1"], "exit": ["spend_365d < 1"], "dwell": "1d"},
         "unknown keys ['dwell']"),
        ({"enter": {"some": ["spend_365d >= 1"]}, "exit": ["spend_365d < 1"]}, "all|any"),
    ],
)
def test_invalid_policies_fail_with_a_message_that_says_what_to_fix(spec, message):
    with pytest.raises(PolicyError) as info:
        policy(bad=spec)
    assert message in str(info.value) and "'bad'" in str(info.value)


def test_policy_file_errors(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("segments: [oops")
    with pytest.raises(PolicyError, match="not valid YAML"):
        SegmentPolicy.load(f, FEATURE_NAMES)
    with pytest.raises(PolicyError, match="cannot read"):
        SegmentPolicy.load(tmp_path / "missing.yaml", FEATURE_NAMES)


def test_version_defaults_to_a_content_hash(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("segments:\n  a: {enter: ['orders_365d >= 1'], exit: ['orders_365d < 1']}\n")
    assert SegmentPolicy.load(f, FEATURE_NAMES).version.startswith("sha256:")


def test_durations():
    assert parse_duration("90m") == 90 * 60_000
    assert parse_duration(30) == 30_000
    assert parse_duration("2w") == 14 * DAY
