"""Readiness and liveness as the worker reports its assignment, restores and broker."""

from __future__ import annotations

from streams.http.health import Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_ready_before_assignment_and_broker_contact():
    h = Health(broker_timeout_s=30, clock=Clock())
    v = h.readiness()
    assert not v.ready
    assert v.reasons == ["waiting for partition assignment", "broker not reached yet"]
    assert v.as_json()["status"] == "unavailable"


def test_ready_only_when_every_assigned_partition_is_restored():
    h = Health(broker_timeout_s=30, clock=Clock())
    h.broker_ok()
    h.assigned([0, 2, 4])
    h.restored(0)
    h.restored(4)
    v = h.readiness()
    assert (v.ready, v.reasons) == (False, ["restoring partitions [2]"])
    assert v.detail["assigned"] == [0, 2, 4] and v.detail["restored"] == [0, 4]
    h.restored(2)
    assert h.readiness().ready
    assert h.readiness().as_json()["status"] == "ok"


def test_eager_rebalance_revokes_all_then_assigns_the_new_set():
    h = Health(clock=Clock())
    h.broker_ok()
    h.assigned([0, 1, 2])
    for p in (0, 1, 2):
        h.restored(p)
    h.revoked([0, 1, 2])
    h.assigned([1, 4])
    v = h.readiness()
    assert v.detail["assigned"] == [1, 4] and v.reasons == ["restoring partitions [1, 4]"]


def test_empty_assignment_is_ready_more_workers_than_partitions():
    h = Health(clock=Clock())
    h.broker_ok()
    h.assigned([])
    assert h.readiness().ready


def test_rebalance_keeps_restored_partitions_and_waits_for_new_ones():
    h = Health(clock=Clock())
    h.broker_ok()
    h.assigned([0, 1])
    h.restored(0)
    h.restored(1)
    h.revoked([1])
    assert h.readiness().ready
    h.assigned([3])  # incremental: added to the partitions kept
    assert h.readiness().reasons == ["restoring partitions [3]"]
    assert h.readiness().detail["assigned"] == [0, 3]
    # a restore report for a partition no longer owned is ignored
    h.restored(1)
    assert h.readiness().detail["restored"] == [0]


def test_broker_silence_longer_than_the_limit_makes_it_unready():
    clock = Clock()
    h = Health(broker_timeout_s=30, clock=clock)
    h.assigned([])
    h.broker_ok()
    clock.now += 30
    assert h.readiness().ready
    clock.now += 1
    v = h.readiness()
    assert not v.ready
    assert v.reasons == ["broker not reached for 31s (limit 30s)"]
    h.broker_ok()
    assert h.readiness().ready


def test_stopping_is_not_ready_but_alive():
    h = Health(clock=Clock())
    h.broker_ok()
    h.assigned([])
    h.stopping()
    assert h.readiness().reasons == ["shutting down"]
    assert h.liveness().ready


def test_liveness_fails_when_the_loop_stalls_outside_a_restore():
    clock = Clock()
    h = Health(stall_timeout_s=60, clock=clock)
    h.tick()
    clock.now += 60
    assert h.liveness().ready
    clock.now += 5
    v = h.liveness()
    assert (v.ready, v.reasons) == (False, ["consume loop stalled for 65s (limit 60s)"])
    # a long restore is slow, not stuck
    h.assigned([0])
    assert h.liveness().ready
    h.restored(0)
    assert not h.liveness().ready
    h.tick()
    assert h.liveness().ready


def test_stall_check_off_by_default():
    clock = Clock()
    h = Health(clock=clock)
    clock.now += 10**6
    assert h.liveness().ready
