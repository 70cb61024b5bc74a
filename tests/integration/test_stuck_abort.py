"""A transactional producer whose abort times out again and again is replaced.

After a broker restart librdkafka can keep the transaction coordinator request queued on a
dead connection: every ``abort_transaction`` then returns "Timed out waiting for operation
to finish, retry call to resume" although the broker is back, and a worker that only
retried stayed stuck for minutes. The worker here gets a real transactional producer
whose first commit fails with an abortable error and whose aborts always time out (the
producer factory is injected, nothing is patched); it must replace the producer after
``TIMEOUTS_WEDGED`` timeouts, and a ``read_committed`` reader must see exactly the
outputs of an uninterrupted run over the same input.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streams.runtime.runner import TIMEOUTS_WEDGED

from .crash_helpers import (
    compare_runs,
    crash_settings,
    produce_inputs,
    read_outputs,
    reference_settings,
    simulated_events,
)
from .kafka_helpers import RunningWorker, committed_total, wait_until

pytestmark = pytest.mark.integration


class StuckAbortProducer:
    """A real transactional producer that fails its first commit (abortable) and whose
    aborts time out like a coordinator request stuck on a dead connection."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self._producer = Producer(conf)
        self.commits_failed = 0
        self.aborts_timed_out = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def commit_transaction(self, *args: Any) -> None:
        if not self.commits_failed:
            self.commits_failed += 1
            raise KafkaException(KafkaError(KafkaError._STATE, "injected abortable failure",
                                            txn_requires_abort=True))
        self._producer.commit_transaction(*args)

    def abort_transaction(self, *args: Any) -> None:
        self.aborts_timed_out += 1
        raise KafkaException(KafkaError(
            KafkaError._TIMED_OUT, "Timed out waiting for operation to finish, retry call "
            "to resume", retriable=True))


def test_a_producer_whose_abort_keeps_timing_out_is_replaced(kafka_bootstrap, test_id,
                                                             tmp_path):
    s = crash_settings(kafka_bootstrap, test_id, tmp_path / "state",
                       SEGSTREAM_PROCESSING_GUARANTEE="exactly_once",
                       SEGSTREAM_BATCH_SIZE="200", SEGSTREAM_TRANSACTION_TIMEOUT_MS="10000")
    produced = produce_inputs(s, simulated_events(40, 3_000, seed=5), seed=5)
    total = produced.records

    ref_s = reference_settings(s, tmp_path / "ref-state")
    ref_worker = RunningWorker(ref_s)
    try:
        wait_until(lambda: committed_total(ref_s) == total, 120, what="reference committed")
    finally:
        ref_worker.stop()
    ref = read_outputs(ref_s)

    made: list[Any] = []

    def producer_factory(conf: dict[str, Any]) -> Any:
        made.append(StuckAbortProducer(conf) if not made else Producer(conf))
        return made[-1]

    running = RunningWorker(s, producer_factory=producer_factory)
    try:
        wait_until(lambda: committed_total(s) == total, 120, what="all input committed")
    finally:
        running.stop()

    stuck = made[0]
    assert stuck.commits_failed == 1
    assert stuck.aborts_timed_out == TIMEOUTS_WEDGED
    assert len(made) == 2, "the stuck producer was not replaced (or replaced twice)"
    assert running.value("segstream_transaction_aborts_total",
                         reason="producer_replaced") == 1
    report = compare_runs(read_outputs(s), ref)
    assert report.ok, report.detail()
    assert report.changes.received > 0
