"""SIGKILL the worker at random moments, at least five times over a 100k-event run, and
restart it each time: a ``read_committed`` reader then sees exactly the outputs of an
uninterrupted run: nothing missing, nothing twice, every payload equal.

The kill moments are seeded (printed; set ``CRASH_SEED`` to repeat a run). Each restarted
worker is killed once it holds its partitions again: either after a random number of
further input records were committed, or after a random sleep, which mostly lands inside
an open transaction (its outputs, changelog records and offsets must all vanish).
"""

from __future__ import annotations

import os
import random
import time

import pytest

from .crash_helpers import (
    Progress,
    WorkerProcess,
    committed_now,
    compare_runs,
    crash_settings,
    dlq_positions,
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

USERS, EVENTS = 1_000, 100_000


def test_sigkill_at_random_moments_changes_nothing_in_the_output(kafka_bootstrap, test_id,
                                                                  tmp_path):
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))
    print(f"\ncrash test seed {seed} (CRASH_SEED={seed} repeats the kill schedule)")
    rng = random.Random(seed)
    started = time.monotonic()
    s = crash_settings(kafka_bootstrap, test_id, tmp_path / "state",
                       # static membership: a restarted worker is back in the group at
                       # once (classic protocol; under KIP-848 a crashed static member's
                       # id stays taken until the broker's 45 s session timeout)
                       SEGSTREAM_GROUP_PROTOCOL="classic",
                       SEGSTREAM_GROUP_INSTANCE_ID=f"{test_id}-w0",
                       SEGSTREAM_BATCH_SIZE="250",
                       # a transaction every 100 ms rather than 500: more commits
                       SEGSTREAM_COMMIT_INTERVAL_MS="100")
    produced = produce_inputs(s, simulated_events(USERS, EVENTS, seed=21), seed=21)
    total = produced.records

    # the uninterrupted reference, on the same input topics
    ref_s = reference_settings(s, tmp_path / "ref-state")
    ref_seconds = run_to_completion(ref_s, total, tmp_path / "reference.log")
    ref = read_outputs(ref_s)
    replayed = replay_agrees(s, produced, ref, tmp_path)
    assert sorted(dlq_positions(ref)) == sorted(produced.bad_positions)
    assert len(ref.changes) > 1_000

    # the run under test: kill -9 at seeded random moments, restart each time
    worker = WorkerProcess(s, tmp_path / "worker.log")
    progress = Progress(s)
    kills = rng.randint(6, 8)
    at_kill: list[int] = []
    modes: list[str] = []
    try:
        for _ in range(kills):
            worker.start()
            worker.wait_logged("partitions assigned")  # it holds partitions with work left
            last = max(at_kill[-1] if at_kill else 0, 0)
            if last < 0.6 * total and rng.random() < 0.35:
                # after a random number of records more were committed by this process
                target = last + rng.randint(200, 3_000)
                modes.append(f"committed>={target}")
                wait_for(lambda t=target: progress.total() >= t, 120,
                         f"{target} input records committed", [worker])
                time.sleep(rng.uniform(0, 0.2))
            else:
                # after a random sleep: mostly inside a transaction, before its commit
                pause = rng.uniform(0.05, 3.5)
                modes.append(f"sleep {pause:.2f}s")
                deadline = time.monotonic() + pause
                wait_for(lambda d=deadline: time.monotonic() >= d
                         or progress.total() >= 0.9 * total, 120, "kill moment", [worker])
            worker.kill()
            at_kill.append(committed_now(progress))
            print(f"kill {len(at_kill)} ({modes[-1]}): {at_kill[-1]} of {total} committed")
        final_started = time.monotonic()
        worker.start()
        wait_for(lambda: progress.total() >= total, 150, "all input committed", [worker])
        final_seconds = time.monotonic() - final_started
        assert worker.stop() == 0, worker.tail()
    finally:
        if worker.running:
            worker.kill()
        progress.close()

    got = read_outputs(s)
    report = compare_runs(got, ref)
    schedule = list(zip(modes, at_kill, strict=True))
    print(f"processing guarantee: {guarantee_of(s)}; kill schedule {schedule}")
    print(figures("kill/restart", total, got, report, kills=len(at_kill),
                  committed_at_kills=at_kill, reference_run_s=round(ref_seconds, 1),
                  final_run_s=round(final_seconds, 1), replay_changes=replayed,
                  wall_s=round(time.monotonic() - started, 1)))
    # every kill came while the worker held partitions; those before the end count
    mid_run = [c for c in at_kill if c < total]
    assert len(mid_run) >= 5, f"only {len(mid_run)} kills before the end: {at_kill}"
    assert worker.starts == len(at_kill) + 1
    assert report.ok, report.detail()
