"""The broker is stopped mid-run and started again, twice (the second time for longer
than the transaction timeout, so the open transaction has to be aborted while the broker
is away): the worker waits, reconnects and finishes, and a ``read_committed`` reader sees
exactly the outputs of an uninterrupted run: nothing lost, nothing twice.

The broker under test is a private one (its own ports, data directory, pid file and lock,
sharing only the jar cache) started and stopped through ``deploy/kafka/kafka.sh``; the
shared broker other tests use is never touched.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .crash_helpers import (
    Progress,
    WorkerProcess,
    committed_now,
    compare_runs,
    crash_settings,
    figures,
    guarantee_of,
    produce_inputs,
    read_outputs,
    reference_settings,
    replay_agrees,
    run_to_completion,
    simulated_events,
    wait_for,
)

pytestmark = pytest.mark.integration

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "kafka.sh"
USERS, EVENTS = 1_000, 100_000


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class PrivateBroker:
    """A second local broker for one test, driven by ``kafka.sh`` with env overrides."""

    port: int
    controller_port: int
    data: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        # without KAFKA_BOOTSTRAP_SERVERS, or kafka.sh would take it for an external cluster
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update({"SEGSTREAM_KAFKA_PORT": str(self.port),
                    "SEGSTREAM_KAFKA_CONTROLLER_PORT": str(self.controller_port),
                    "SEGSTREAM_KAFKA_DATA": str(self.data),
                    "SEGSTREAM_KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m"})
        return env

    def run(self, *args: str) -> float:
        started = time.monotonic()
        subprocess.run([str(KAFKA_SH), *args], env=self._env(), check=True, timeout=180)
        return time.monotonic() - started


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    port, controller = _free_ports(2)
    assert 9092 not in (port, controller)
    broker = PrivateBroker(port, controller, tmp_path / "kafka")
    broker.run("start")
    try:
        yield broker
    finally:
        broker.run("stop", "--wipe")


def test_worker_rides_out_a_broker_restart(private_broker, test_id, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))
    print(f"\nbroker restart test seed {seed} (CRASH_SEED={seed} repeats it)")
    rng = random.Random(seed)
    started = time.monotonic()
    # a short transaction timeout bounds how long a producer wedged by the restart blocks
    # before the worker replaces it
    s = crash_settings(private_broker.bootstrap, test_id, tmp_path / "state",
                       SEGSTREAM_BATCH_SIZE="100", SEGSTREAM_TRANSACTION_TIMEOUT_MS="15000")
    produced = produce_inputs(s, simulated_events(USERS, EVENTS, seed=23), seed=23)
    total = produced.records
    ref_s = reference_settings(s, tmp_path / "ref-state")
    ref_seconds = run_to_completion(ref_s, total, tmp_path / "reference.log")
    ref = read_outputs(ref_s)
    replayed = replay_agrees(s, produced, ref, tmp_path)

    worker = WorkerProcess(s, tmp_path / "worker.log")
    progress = Progress(s)
    try:
        worker.start()
        target = int(rng.uniform(0.05, 0.2) * total)
        wait_for(lambda: progress.total() >= target, 120, f"{target} records committed",
                 [worker])
        before_stop = progress.total()
        stop_s = private_broker.run("stop")
        downtime = rng.uniform(3, 8)
        _stay_alive(worker, downtime)
        start_s = private_broker.run("start")
        # the first answer of a fresh client (the coordinator may still be loading)
        fresh = Progress(s)
        try:
            after_start = committed_now(fresh)
        finally:
            fresh.close()
        restarted = time.monotonic()
        # 2. a second outage, longer than the transaction timeout: the open transaction's
        #    records time out while the broker is down, so the worker must abort it
        #    while the broker is still away (a timed-out abort is retried, not fatal)
        target = min(total - 1, max(after_start, progress.total()) + int(0.1 * total))
        wait_for(lambda: progress.total() >= target, 120, f"{target} records committed",
                 [worker])
        before_long = progress.total()
        private_broker.run("stop")
        # records time out one transaction timeout after the stop; the abort that follows
        # waits another one: down for longer than both, that abort times out and the
        # worker has to call it again
        long_down = 2 * s.transaction_timeout_ms / 1000 + rng.uniform(3, 6)
        _stay_alive(worker, long_down)
        private_broker.run("start")
        wait_for(lambda: progress.total() >= total, 180, "all input committed", [worker])
        recovered_s = time.monotonic() - restarted
        assert worker.stop() == 0, worker.tail()
    finally:
        if worker.running:
            worker.kill()
        progress.close()

    got = read_outputs(s)
    report = compare_runs(got, ref)
    complaints = [r for r in worker.records() if r.get("level") in {"WARNING", "ERROR"}]
    print(f"processing guarantee: {guarantee_of(s)}; broker stopped at {before_stop} "
          f"committed (stop took {stop_s:.1f}s), down {downtime:.1f}s, start took "
          f"{start_s:.1f}s; committed right after the restart {after_start}; all committed "
          f"{recovered_s:.1f}s after the restart (including a second outage of "
          f"{long_down:.1f}s at {before_long} committed); worker warnings/errors logged "
          f"{len(complaints)}")
    print(figures("broker restart", total, got, report, reference_run_s=round(ref_seconds, 1),
                  replay_changes=replayed, wall_s=round(time.monotonic() - started, 1)))
    assert 0 <= after_start < total, \
        f"the worker had finished ({after_start}/{total}) before the broker went down"
    assert report.ok, report.detail()
    aborted = [r for r in complaints if r.get("msg", "").startswith("transaction aborted")]
    assert aborted, "the long outage did not time out the open transaction's records"
    retried = [r for r in complaints if r.get("call") == "abort_transaction"]
    assert retried, "no abort was attempted while the broker was still down"


def _stay_alive(worker: WorkerProcess, seconds: float) -> None:
    """The broker is down: the worker must wait, not exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.ensure_alive()
        time.sleep(0.2)
