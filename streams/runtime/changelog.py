"""Restoring a partition's state store from its compacted changelog topic.

The changelog is the durable copy of the state; a local RocksDB store is a cache of it
with a checkpoint (the next changelog offset it contains). On assignment the runner
brings the store up to the end of the changelog partition:

- from the checkpoint when the local store is this worker's own and recent enough;
- from the beginning, after wiping the store, when there is no checkpoint, when another
  instance wrote it (a volume moved between hosts), when the checkpoint lies before the
  log start (retention) or is older than the changelog's tombstone retention (an erasure
  tombstone might have been compacted away and the user would come back).

Reading stops at the partition end as a ``read_committed`` consumer sees it (the last
stable offset), so records of an open or aborted transaction of a dead worker are never
restored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.exceptions import KafkaIOError
from streams.runtime.store import PartitionStore

log = logging.getLogger(__name__)

TOMBSTONE_RETENTION_MS = 86_400_000  # the changelog's delete.retention.ms (topics.py)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    partition: int
    records: int
    start_offset: int
    end_offset: int
    seconds: float
    from_scratch: bool


def restore_partition(
    consumer: Consumer,
    topic: str,
    partition: int,
    store: PartitionStore,
    owner: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 5_000,
    timeout_s: float = 600.0,
) -> RestoreResult:
    """Bring ``store`` up to the end of changelog ``topic[partition]``.

    ``consumer`` is a group-less, ``read_committed`` consumer with partition EOF events;
    ``progress(records, remaining)`` is called after every applied chunk.
    """
    started = time.monotonic()
    tp = TopicPartition(topic, partition)
    lo, hi = _watermarks(consumer, tp)
    cp = store.checkpoint()
    start = int(cp.get("changelog_next", -1))
    reason = ""
    if start < 0:
        reason = "no checkpoint" if store.users() == 0 else "store without checkpoint"
    elif cp.get("owner") not in ("", None, owner):
        reason = f"written by {cp.get('owner')}"
    elif start < lo:
        reason = f"checkpoint {start} before the log start {lo}"
    elif start > hi:
        reason = f"checkpoint {start} beyond the log end {hi} (changelog recreated?)"
    elif time.time() * 1000 - int(cp.get("written_at", 0)) > TOMBSTONE_RETENTION_MS:
        reason = "checkpoint older than the tombstone retention"
    from_scratch = bool(reason)
    if from_scratch:
        if store.users() or cp:
            log.warning("restoring partition from scratch", extra={"ctx": {
                "partition": partition, "reason": reason}})
        store.wipe()
        start = lo
    records = 0
    if start < hi:
        consumer.assign([TopicPartition(topic, partition, start)])
        try:
            records = _read_to_end(consumer, store, start, hi, progress, batch,
                                   started + timeout_s)
        finally:
            consumer.unassign()
    else:
        store.flush({}, changelog_next=max(start, hi), owner=owner)
    result = RestoreResult(partition, records, start, hi, time.monotonic() - started,
                           from_scratch)
    store.flush({}, owner=owner, watermark=0)
    return result


def _watermarks(consumer: Consumer, tp: TopicPartition, wait_s: float = 60.0) -> tuple[int, int]:
    """The partition's offsets; a just-created changelog may not be in the metadata yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
            return int(lo), int(hi)
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (
                    err.retriable() or err.code() in (KafkaError._UNKNOWN_PARTITION,
                                                      KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                      KafkaError.LEADER_NOT_AVAILABLE,
                                                      KafkaError.NOT_LEADER_FOR_PARTITION)):
                raise KafkaIOError(f"cannot read the changelog {tp.topic}[{tp.partition}]: "
                                   f"{err.str()}") from None
            time.sleep(0.5)


def _read_to_end(consumer: Consumer, store: PartitionStore, start: int, hi: int,
                 progress: Callable[[int, int], None] | None, batch: int,
                 deadline: float) -> int:
    records = 0
    pending: dict[str, bytes | None] = {}
    position = start
    done = False
    while not done:
        if time.monotonic() > deadline:
            raise KafkaIOError(f"changelog restore did not finish by its deadline "
                               f"(at offset {position} of {hi})")
        for msg in consumer.consume(batch, 0.1):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # read_committed stops at the last stable offset. Below the high
                    # watermark a transaction of the previous owner is still open or its
                    # commit markers are not written yet: wait for it to finish (commit
                    # or abort by the broker), or the restored state would miss a batch
                    # whose offsets are already committed.
                    tp = TopicPartition(cast(str, msg.topic()), cast(int, msg.partition()))
                    done = consumer.position([tp])[0].offset >= hi
                    if not done:
                        time.sleep(0.1)
                    continue
                if err.fatal():
                    raise KafkaIOError(f"changelog restore failed: {err.str()}")
                log.warning("changelog restore: consumer error",
                            extra={"ctx": {"error": err.str()}})
                continue
            key: Any = msg.key()
            if key is None:
                continue
            pending[key.decode()] = msg.value()
            position = int(msg.offset() or 0) + 1
            records += 1
        if pending:
            store.restore(list(pending.items()), changelog_next=position)
            pending.clear()
            if progress is not None:
                progress(records, max(0, hi - position))
    return records
