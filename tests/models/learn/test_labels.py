"""Delayed labels: what matures when, bounded pending lists, durable encoding."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import msgspec

from models.learn.config import ModelConfig
from models.learn.labels import add_snapshot, next_due, on_order, on_watermark

DAY = 86_400_000
CFG = ModelConfig(horizon_days=30, snapshot_gap_s=86_400, max_pending=5)


def test_no_order_within_horizon_matures_as_churned_at_t_plus_h() -> None:
    p = add_snapshot([], 10 * DAY, [1.0, None], CFG)
    p, m = on_watermark(p, 40 * DAY - 1, CFG)
    assert m == [] and len(p) == 1
    p, m = on_watermark(p, 40 * DAY, CFG)
    assert p == [] and m == [([1.0, None], 1, 0.0)]


def test_by_default_both_labels_are_released_at_the_horizon() -> None:
    p = add_snapshot([], 0, [1.0], CFG)
    p = add_snapshot(p, 2 * DAY, [2.0], CFG)
    p, m = on_order(p, 5 * DAY, 30.0, CFG)
    assert m == []
    p, m = on_watermark(p, 30 * DAY, CFG)
    assert m == [([1.0], 0, 30.0)]
    p, m = on_watermark(p, 32 * DAY, CFG)
    assert p == [] and m == [([2.0], 0, 30.0)]


def test_early_labels_settle_churn_at_the_order_and_value_at_the_horizon() -> None:
    cfg = replace(CFG, early_labels=True)
    p = add_snapshot([], 0, [1.0], cfg)
    p = add_snapshot(p, 2 * DAY, [2.0], cfg)
    p, m = on_order(p, 5 * DAY, 30.0, cfg)
    assert m == [([1.0], 0, None), ([2.0], 0, None)]
    p, m = on_order(p, 31 * DAY, 20.0, cfg)  # outside the first snapshot's horizon
    assert m == []
    p, m = on_watermark(p, 40 * DAY, cfg)
    assert m == [([1.0], None, 30.0), ([2.0], None, 50.0)]
    assert p == []


def test_order_at_snapshot_time_or_at_the_horizon_does_not_count() -> None:
    p = add_snapshot([], 0, [1.0], CFG)
    p, m = on_order(p, 0, 10.0, CFG)
    assert m == []
    p, m = on_order(p, 30 * DAY, 10.0, CFG)
    assert m == []
    _, m = on_watermark(p, 30 * DAY, CFG)
    assert m == [([1.0], 1, 0.0)]


def test_pending_is_bounded_by_gap_and_count() -> None:
    p: list[list[Any]] = []
    for hour in range(0, 24 * 10, 6):
        p = add_snapshot(p, hour * 3_600_000, [float(hour)], CFG)
    assert len(p) == CFG.max_pending
    times: list[int] = [e[0] for e in p]
    assert all(b - a >= DAY for a, b in itertools.pairwise(times))
    assert next_due(p, CFG) == times[0] + 30 * DAY
    assert next_due([], CFG) is None


def test_pending_survives_msgpack_round_trip_like_the_user_state() -> None:
    p = add_snapshot([], 0, [1.5, None, 3.0], CFG)
    p, _ = on_order(p, DAY, 12.5, CFG)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(p), type=list[list[object]])
    assert back == p
    _, m = on_watermark(back, 30 * DAY, CFG)
    assert m == [([1.5, None, 3.0], 0, 12.5)]
