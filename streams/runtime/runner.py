"""The worker's consume loop: poll, decode, process, produce, commit. All of it, here.

Guarantee: at-least-once output with exactly-once *state*. Per batch:

1. every output (segment changes, current records, dead letters) is produced and the
   producer flushed; any failed delivery stops the worker before anything is committed;
2. the touched users' states and the next input offsets are written to the partition's
   RocksDB store in one atomic batch;
3. the same offsets are committed to the consumer group (asynchronously; synchronously
   when partitions are revoked and at shutdown).

After a crash the worker resumes from the store's offsets (which are never behind the
group's), so the state never counts an event twice; outputs of a batch that was produced
but not stored are produced again (same deterministic ids), which downstream consumers
de-duplicate by ``event_id``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.exceptions import DeliveryError, InvalidEvent, KafkaIOError
from streams.kafka.clients import consumer_config, producer_config
from streams.kafka.dlq import dlq_headers
from streams.metrics import WorkerMetrics
from streams.runtime.align import NO_TS, Aligner
from streams.runtime.processor import Processor, Source, dumps
from streams.runtime.store import PartitionStore

log = logging.getLogger(__name__)


class Worker:
    """One worker process of the ``segstream`` consumer group.

    Parameters
    ----------
    settings
        The process settings.
    processor, decoder, metrics
        The pure processing core, the decode boundary and the metric families.
    consumer_factory, producer_factory
        Build the Kafka clients from a config dict (tests inject wrappers here).
    clock
        Wall clock in seconds; injected for tests of timestamp sanity checks.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        processor: Processor,
        decoder: EventDecoder,
        metrics: WorkerMetrics,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.decoder = decoder
        self.metrics = metrics
        self.clock = clock
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.stores: dict[int, PartitionStore] = {}
        self._stop = threading.Event()
        self._delivery_errors: list[str] = []
        self._acked: dict[str, int] = {}
        self.consumer = consumer_factory(
            consumer_config(settings, stats_cb=self._on_stats, error_cb=self._on_error,
                            on_commit=self._on_commit)
        )
        self.producer = producer_factory(producer_config(settings, error_cb=self._on_error))
        self._fatal: KafkaError | None = None
        self.aligner = Aligner(settings.topics.inputs, settings.align_max_idle_ms)
        self._consumed: dict[tuple[str, int], int] = {}
        self._eof: dict[tuple[str, int], int] = {}  # end of partition seen, at this watermark
        self._start: dict[tuple[str, int], int] = {}
        self._paused: set[tuple[str, int]] = set()
        self._uncommitted: dict[tuple[str, int], int] = {}
        self.batches = 0
        self.processed = 0
        self.dead_letters: dict[str, int] = {}
        self._last_report = time.monotonic()

    # ------------------------------------------------------------------ control
    def stop(self, *_: object) -> None:
        """Ask the loop to finish its current batch, commit and leave (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal received; finishing the current batch",
                     extra={"ctx": {"signal": signal.Signals(signum).name}})
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, max_batches: int | None = None) -> None:
        """Consume until :meth:`stop` (or ``max_batches``); always leave the group cleanly."""
        t = self.settings.topics
        self.consumer.subscribe(list(t.inputs), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("worker started", extra={"ctx": {"instance": self.instance,
                                                  "topics": list(t.inputs),
                                                  "group": self.settings.group_id}})
        try:
            while not self._stop.is_set():
                if self._fatal is not None:
                    raise KafkaIOError(f"fatal Kafka error: {self._fatal.str()}")
                msgs = self.consumer.consume(self.settings.batch_size,
                                             self.settings.poll_timeout_s)
                if msgs or self.aligner.buffered():
                    self._process_batch(msgs)
                    if max_batches is not None and self.batches >= max_batches:
                        break
        finally:
            self._shutdown()

    # -------------------------------------------------------------- the batch
    def _process_batch(self, msgs: list[Message]) -> None:
        s = self.settings
        now_ms = int(self.clock() * 1000)
        # 1. decode everything consumed and buffer it per topic-partition
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    tp = TopicPartition(cast(str, msg.topic()), cast(int, msg.partition()))
                    hi = self.consumer.get_watermark_offsets(tp, cached=True)[1]
                    self._eof[(tp.topic, tp.partition)] = hi
                else:
                    self._consumer_error(err)
                continue
            # A consumed message always has a topic, partition and offset.
            topic = cast(str, msg.topic())
            part, offset = cast(int, msg.partition()), cast(int, msg.offset())
            self._consumed[(topic, part)] = offset + 1
            self._eof.pop((topic, part), None)
            try:
                event = self.decoder.decode(topic, msg.key(), msg.value(), now_ms)
            except InvalidEvent as exc:
                self.aligner.add(topic, part, offset, NO_TS, (msg, exc))
                continue
            self.aligner.add(topic, part, offset, event.ts_ms, (msg, event))
        # 2. process what is safe to release, in event-time order per partition number
        positions: dict[tuple[str, int], int] = {}
        changes_ts: list[tuple[int, int]] = []
        produce = self.producer.produce
        on_delivery = self._on_delivery
        # Memoised for this release: nothing new is consumed while it runs, and it asks
        # about the same empty siblings once per released message.
        memo: dict[tuple[str, int], bool | None] = {}

        def caught_up(topic: str, part: int) -> bool | None:
            key = (topic, part)
            if key not in memo:
                memo[key] = self._caught_up(topic, part)
            return memo[key]

        released = 0
        counts: dict[tuple[str, str], int] = {}
        for topic, part, offset, (msg, event) in self.aligner.release(caught_up, now_ms):
            released += 1
            positions[(topic, part)] = offset + 1
            if isinstance(event, InvalidEvent):
                self._dead_letter(msg, event)
                continue
            store = self.stores[part]
            try:
                result = self.processor.process(store.get(event.user_id), event,
                                                Source(topic, part, offset))
            except InvalidEvent as exc:
                self._dead_letter(msg, exc)
                continue
            counts[(topic, event.type)] = counts.get((topic, event.type), 0) + 1
            store.put(event.user_id, result.state)
            if result.changes and result.current is not None:
                key = msg.key()
                for ch in result.changes:
                    produce(s.topics.changes, key=key, value=dumps(ch), on_delivery=on_delivery)
                    self.metrics.changes.labels(ch["segment"], ch["change"]).inc()
                produce(s.topics.current, key=key, value=dumps(result.current),
                        on_delivery=on_delivery)
                changes_ts.append((event.ts_ms, msg.timestamp()[1]))
        # 3. outputs, state and offsets of what was released
        self._commit(positions, changes_ts)
        for (topic, etype), n in counts.items():
            self.metrics.events.labels(topic, etype).inc(n)
        self._backpressure()
        self.batches += 1
        self.processed += released
        self.metrics.batch_size.observe(released)
        self._report_progress()

    def _report_progress(self, every_s: float = 60.0) -> None:
        """One summary line a minute: throughput and the dead-letter count by reason."""
        now = time.monotonic()
        if now - self._last_report < every_s:
            return
        self._last_report = now
        log.info("progress", extra={"ctx": {
            "processed": self.processed, "batches": self.batches,
            "dead_letters": dict(self.dead_letters), "buffered": self.aligner.buffered(),
            "stores": len(self.stores)}})

    def _caught_up(self, topic: str, part: int) -> bool | None:
        """Whether a topic-partition has been read to its end: True, False, or None when
        librdkafka has not fetched it yet.

        Two signals: the partition-EOF event, and the position against the high watermark
        librdkafka caches from fetch responses. The watermark alone is not enough: with
        transactional producers the log ends in a control record that a
        ``read_committed`` consumer never receives, so only EOF says "caught up" there.
        """
        key = (topic, part)
        lo, hi = self.consumer.get_watermark_offsets(TopicPartition(topic, part), cached=True)
        eof_hi = self._eof.get(key)
        if eof_hi is not None:
            # EOF holds while the log has not grown since; a larger watermark means new
            # data is already on its way to this consumer.
            return hi < 0 or hi <= eof_hi
        if hi < 0:
            return None
        pos = self._consumed.get(key, self._start.get(key, lo))
        if pos < 0:
            return None
        return pos >= hi

    def _backpressure(self) -> None:
        """Pause topic-partitions whose buffer runs far ahead; resume them when drained."""
        limit = self.settings.align_max_buffer
        pause, resume = [], []
        for key, n in self.aligner.queue_sizes().items():
            if n > limit and key not in self._paused:
                pause.append(key)
            elif n <= limit // 2 and key in self._paused:
                resume.append(key)
        if pause:
            self.consumer.pause([TopicPartition(t, p) for t, p in pause])
            self._paused.update(pause)
        if resume:
            self.consumer.resume([TopicPartition(t, p) for t, p in resume])
            self._paused.difference_update(resume)

    def _commit(self, positions: dict[tuple[str, int], int],
                changes_ts: list[tuple[int, int]]) -> None:
        started = time.perf_counter()
        # 1. outputs: wait until the broker acknowledged every record of the batch
        remaining = self.producer.flush(120)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(f"{remaining} outputs unacknowledged; errors: {errors[:5]}")
        for topic, n in self._acked.items():
            self.metrics.outputs.labels(topic).inc(n)
        self._acked.clear()
        now = time.time()
        for event_ms, append_ms in changes_ts:
            self.metrics.e2e_event_seconds.observe(max(0.0, now - event_ms / 1000))
            if append_ms > 0:
                self.metrics.e2e_append_seconds.observe(max(0.0, now - append_ms / 1000))
        if not positions:
            return
        # 2. state: users and next offsets, one atomic write per partition store
        by_part: dict[int, dict[str, int]] = {}
        for (topic, part), nxt in positions.items():
            by_part.setdefault(part, {})[topic] = nxt
        for part, offsets in by_part.items():
            self.stores[part].flush(offsets)
        # 3. group: commit the same offsets asynchronously. The store is authoritative for
        #    this worker; the group's copy serves lag monitoring and a new owner, and is
        #    committed synchronously when partitions are revoked and at shutdown.
        self._uncommitted.update(positions)
        self.consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
            asynchronous=True,
        )
        self.metrics.commit_seconds.observe(time.perf_counter() - started)

    def _dead_letter(self, msg: Message, exc: InvalidEvent) -> None:
        self.dead_letters[exc.reason] = self.dead_letters.get(exc.reason, 0) + 1
        self.metrics.dlq.labels(exc.reason).inc()
        self.metrics.events.labels(msg.topic(), "invalid").inc()
        log.warning("event dead-lettered", extra={"ctx": {
            "reason": exc.reason, "detail": exc.detail[:300], "topic": msg.topic(),
            "partition": msg.partition(), "offset": msg.offset()}})
        self.producer.produce(self.settings.topics.dlq, key=msg.key(), value=msg.value(),
                              headers=dlq_headers(msg, exc, self.instance),
                              on_delivery=self._on_delivery)

    # -------------------------------------------------------------- callbacks
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")
        else:
            t = cast(str, msg.topic())
            self._acked[t] = self._acked.get(t, 0) + 1

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            self.metrics.commit_failures.inc()
            log.warning("offset commit refused; the local store holds the position",
                        extra={"ctx": {"error": err.str()}})

    def _commit_group_sync(self) -> None:
        """Commit the latest processed positions synchronously (revoke and shutdown)."""
        if not self._uncommitted:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items()]
        self._uncommitted.clear()
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.commit_failures.inc()
            log.warning("offset commit refused; the local store holds the position",
                        extra={"ctx": {"error": exc.args[0].str()}})

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("fatal Kafka error", extra={"ctx": {"error": err.str()}})
        else:
            log.warning("Kafka client error", extra={"ctx": {"error": err.str()}})

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaIOError(f"fatal consumer error: {err.str()}")
        self.metrics.consumer_errors.labels(err.name()).inc()
        log.warning("consumer error", extra={"ctx": {"error": err.str()}})

    def _on_stats(self, raw: str) -> None:
        stats = orjson.loads(raw)
        for tname, topic in stats.get("topics", {}).items():
            for pid, p in topic.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if pid != "-1" and lag >= 0:
                    self.metrics.lag.labels(tname, pid).set(lag)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Open the stores of newly assigned partition numbers; resume from their offsets."""
        for tp in partitions:
            if tp.partition not in self.stores:
                self.stores[tp.partition] = PartitionStore(
                    self._store_path(tp.partition),
                    cache_size=max(100, self.settings.cache_users // 4))
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in consumer.committed(partitions, timeout=30)}
        ahead: list[TopicPartition] = []
        for tp in partitions:
            stored = self.stores[tp.partition].offsets().get(tp.topic)
            group = committed.get((tp.topic, tp.partition), -1001)
            start = stored if stored is not None else group
            if start >= 0:
                self._start[(tp.topic, tp.partition)] = start
            if stored is not None:
                if stored > group:
                    # the last group commit before a crash was lost: catch the group up,
                    # or its lag would stay wrong until new data arrives
                    ahead.append(TopicPartition(tp.topic, tp.partition, stored))
                if group >= 0 and stored < group:
                    log.warning("local store is behind the group; replaying to rebuild state",
                                extra={"ctx": {"topic": tp.topic, "partition": tp.partition,
                                               "store_offset": stored, "group_offset": group}})
                tp.offset = stored
            elif group >= 0:
                log.warning("no local state for a partition with committed offsets; "
                            "continuing with empty state",
                            extra={"ctx": {"topic": tp.topic, "partition": tp.partition,
                                           "group_offset": group}})
        consumer.assign(partitions)
        if ahead:
            consumer.commit(offsets=ahead, asynchronous=True)
        self.metrics.assigned.set(len(partitions))
        self._update_store_gauge()
        log.info("partitions assigned", extra={"ctx": {
            "partitions": sorted({tp.partition for tp in partitions}),
            "offsets": {f"{tp.topic}[{tp.partition}]": tp.offset for tp in partitions}}})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Each batch is stored before the next poll; make the group's copy current so the
        # next owner of these partitions starts where this worker stopped.
        self._commit_group_sync()
        self._close_stores({tp.partition for tp in partitions})
        self.metrics.assigned.set(0)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost", extra={"ctx": {"partitions": [tp.partition
                                                                       for tp in partitions]}})
        self._close_stores({tp.partition for tp in partitions})

    # ---------------------------------------------------------------- helpers
    def _store_path(self, partition: int) -> Path:
        return self.settings.state_dir / self.settings.group_id / f"p{partition}"

    def _close_stores(self, parts: set[int]) -> None:
        # Buffered messages of these partitions were never committed: the next owner
        # (or this worker after reassignment) fetches them again from the stored offsets.
        self.aligner.drop(parts)
        self._paused = {k for k in self._paused if k[1] not in parts}
        for positions in (self._consumed, self._eof, self._start, self._uncommitted):
            for key in [k for k in positions if k[1] in parts]:
                del positions[key]
        for p in parts:
            store = self.stores.pop(p, None)
            if store is not None:
                store.close()

    def _update_store_gauge(self) -> None:
        self.metrics.store_users.set(sum(s.users() for s in self.stores.values()))

    def _shutdown(self) -> None:
        # 1. outputs still queued are delivered (or reported) before leaving
        remaining = self.producer.flush(30)
        if remaining:
            log.error("outputs not acknowledged at shutdown; they were not committed",
                      extra={"ctx": {"remaining": remaining}})
        # 2. the group gets the final positions; the stores close (each batch was stored)
        self._commit_group_sync()
        self._close_stores(set(self.stores))
        # 3. the consumer leaves the group so its partitions move at once
        self.consumer.close()
        log.info("worker stopped", extra={"ctx": {"batches": self.batches,
                                                  "processed": self.processed,
                                                  "dead_letters": dict(self.dead_letters)}})
