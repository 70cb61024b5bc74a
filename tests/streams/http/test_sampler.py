"""The status sampler turns a registry into rates, windowed quantiles and sizes."""

from __future__ import annotations

import math
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.http.sampler import StatusSampler, histogram_quantile
from streams.metrics import WorkerMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup():
    reg = CollectorRegistry()
    clock = Clock()
    return reg, WorkerMetrics(reg), StatusSampler(reg, interval_s=10, points=4, clock=clock), clock


def test_first_sample_has_no_rates_then_rates_over_the_interval(setup):
    _reg, m, s, clock = setup
    m.events.labels("shop.clicks", "click").inc(100)
    first = s.sample()
    assert first["events_per_s"] is None and first["flows"] == {}
    m.events.labels("shop.clicks", "click").inc(300)
    m.events.labels("shop.orders", "invalid").inc(100)
    m.dlq.labels("malformed_json").inc(100)
    m.changes.labels("vip", "entered").inc(20)
    m.changes.labels("vip", "exited").inc(5)
    clock.now += 10
    p = s.sample()
    assert p["events_per_s"] == 40.0
    assert p["dlq_per_s"] == 10.0
    assert p["changes_per_s"] == 2.5
    assert p["flows"] == {"vip": {"entered": 20.0, "exited": 5.0}}
    # without a membership gauge, sizes are the net flow since the process started
    assert p["segments"] == {"vip": 15.0} and p["sizes_source"] == "net_changes"


def test_sizes_come_from_the_membership_gauge_when_there_is_one():
    reg = CollectorRegistry()  # the families by name, whichever class builds them
    members = Gauge("segstream_segment_members", "members", ["segment"], registry=reg)
    changes = Counter("segstream_segment_changes_total", "c", ["segment", "change"],
                      registry=reg)
    members.labels("vip").set(1200)
    members.labels("dormant").set(80)
    changes.labels("vip", "entered").inc(3)
    p = StatusSampler(reg).sample()
    assert p["segments"] == {"dormant": 80.0, "vip": 1200.0}
    assert p["sizes_source"] == "members"


def test_latency_quantiles_cover_only_the_last_interval(setup):
    _reg, m, s, clock = setup
    for _ in range(100):
        m.e2e_append_seconds.observe(20.0)  # old, slow observations
    s.sample()
    for _ in range(98):
        m.e2e_append_seconds.observe(0.03)
    m.e2e_append_seconds.observe(0.07)
    m.e2e_append_seconds.observe(0.07)
    clock.now += 10
    p = s.sample()["latency"]["append"]
    assert 0.025 < p["p50"] <= 0.05
    assert p["p99"] == pytest.approx(0.075)  # rank 99 of 100, halfway into (0.05, 0.1]
    clock.now += 10
    assert s.sample()["latency"]["append"] == {"p50": None, "p99": None}  # nothing new


def test_models_prefer_the_rolling_window(setup):
    reg, _m, s, _clock = setup
    auc = Gauge("segstream_model_auc", "auc", ["model", "window"], registry=reg)
    ll = Gauge("segstream_model_logloss", "ll", ["model", "window"], registry=reg)
    auc.labels("churn", "overall").set(0.81)
    auc.labels("churn", "rolling").set(0.74)
    ll.labels("churn", "overall").set(0.41)
    assert s.sample()["models"] == {"churn": {"auc": 0.74, "logloss": 0.41}}


def test_lag_is_summed_over_partitions(setup):
    _reg, m, s, _clock = setup
    assert s.sample()["lag"] is None
    m.lag.labels("shop.clicks", "0").set(10)
    m.lag.labels("shop.clicks", "1").set(5)
    assert s.sample()["lag"] == 15.0


def test_ring_is_bounded_and_snapshot_lists_series(setup):
    _reg, m, s, clock = setup
    m.changes.labels("vip", "entered").inc()
    for _ in range(10):
        clock.now += 10
        s.sample()
    snap = s.snapshot()
    assert len(snap["points"]) == 4 and snap["capacity"] == 4
    assert snap["segments"] == ["vip"] and snap["interval_s"] == 10
    times = [p["t"] for p in snap["points"]]
    assert times == sorted(times) and times[-1] == clock.now


def test_thread_samples_until_closed():
    reg = CollectorRegistry()
    s = StatusSampler(reg, interval_s=0.05, points=1000)
    s.start()
    done = threading.Event()
    for _ in range(100):
        if len(s.snapshot()["points"]) >= 3:
            done.set()
            break
        done.wait(0.05)
    s.close()
    n = len(s.snapshot()["points"])
    assert n >= 3
    done.wait(0.2)
    assert len(s.snapshot()["points"]) == n  # stopped


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(0.1, 0), (1.0, 10), (math.inf, 10)], 0.55),
    (0.9, [(0.1, 9), (1.0, 10), (math.inf, 10)], 0.1),
    (1.0, [(0.1, 5), (1.0, 5), (math.inf, 10)], 1.0),
    (0.5, [(math.inf, 4), (0.5, 4)], 0.25),  # order of buckets does not matter
])
def test_histogram_quantile_matches_promql(q, buckets, expected):
    assert histogram_quantile(q, buckets) == pytest.approx(expected)
