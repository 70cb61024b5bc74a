"""The worker's consume loop: poll, decode, process, produce, commit. All of it, here.

Exactly-once (the default, ``SEGSTREAM_PROCESSING_GUARANTEE=exactly_once``). Per batch:

1. the transaction begins with the batch's first output;
2. every output (segment changes, current records, alerts, dead letters, audit records)
   and every state write (the partition's changelog topic) is produced in it;
3. the input positions are sent to the transaction (``send_offsets_to_transaction``) and
   the transaction commits: outputs, state and offsets become visible together or not at
   all;
4. the same state writes go to the local RocksDB store with the changelog offset as its
   checkpoint (after the commit: the store never holds uncommitted state).

An abortable error aborts the transaction, forgets the batch's state writes and rewinds
the consumer to the committed positions; a fenced or fatal producer stops the worker (a
newer instance owns its transactional id). A store behind the changelog (a crash between
3 and 4, a partition that moved) is brought up to date from the changelog on assignment
(:mod:`streams.runtime.changelog`).

At-least-once (``at_least_once``): outputs and changelog records are flushed before the
store is written and the offsets committed; after a crash a batch's outputs are produced
again with the same deterministic ids, and the user states de-duplicate the replayed
events by ``event_id``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, cast

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streams.config import Settings
from streams.contracts.decode import EventDecoder, ScoringDecoder, decode_enriched
from streams.contracts.enriched import EnrichedReview
from streams.contracts.erase import EraseRequest, audit_record, decode_erase
from streams.exceptions import DeliveryError, InvalidEvent, KafkaIOError
from streams.http.health import Health
from streams.kafka.clients import consumer_config, producer_config, restore_consumer_config
from streams.kafka.dlq import dlq_headers
from streams.metrics import ModelMetrics, WorkerMetrics
from streams.runtime.align import NO_TS, Aligner
from streams.runtime.changelog import restore_partition
from streams.runtime.processor import Processor, Result, Source, dumps, iso
from streams.runtime.store import PartitionStore, memtable_budget

log = logging.getLogger(__name__)


TIMEOUTS_WEDGED = 3
"""Consecutive timed-out attempts after which a transactional producer is replaced."""


class _Wedged(Exception):
    """A transactional call did not return within its deadline."""


class TransactionAborted(Exception):
    """The batch's transaction was aborted and the consumer rewound (internal signal)."""


class Worker:
    """One worker process of the ``segstream`` consumer group.

    Parameters
    ----------
    settings
        The process settings.
    processor, decoder, metrics
        The pure processing core, the decode boundary and the metric families.
    consumer_factory, producer_factory
        Build the Kafka clients from a config dict (tests inject wrappers here); the
        consumer factory also builds the group-less changelog restore consumer.
    clock
        Wall clock in seconds; injected for tests of timestamp sanity checks.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        processor: Processor,
        decoder: EventDecoder | ScoringDecoder,
        metrics: WorkerMetrics,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        clock: Callable[[], float] = time.time,
        health: Health | None = None,
        model_metrics: ModelMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.models = processor.models
        self.model_metrics = model_metrics
        self._matured: list[Any] = []
        self._change_counters: dict[tuple[str, str], Any] = {}
        self._max_ts = 0
        self._model_offsets: dict[str, int] = {}
        self._last_snapshot = time.monotonic()
        self._last_model_refresh = 0.0
        self._snapshot_meta: dict[str, Any] = {}
        self.health = health if health is not None else Health()
        self.processor = processor
        self.decoder = decoder
        self.metrics = metrics
        self.clock = clock
        self.eos = settings.processing_guarantee == "exactly_once"
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.owner = self._owner_id()
        self.transactional_id = (settings.transactional_id
                                 or f"{settings.group_id}-{self.owner}")
        self.stores: dict[int, PartitionStore] = {}
        self._write_buffers = memtable_budget(settings.state_memtable_mb)
        self._stop = threading.Event()
        self._delivery_errors: list[str] = []
        self._acked: dict[str, int] = {}
        self._changelog_hi: dict[int, int] = {}
        t = settings.topics
        if settings.role == "scoring":
            # the scoring stage: requests of the event worker, and erasures (the user's
            # labels and scores live here too)
            self._inputs: tuple[str, ...] = (t.scoring, t.erase)
        else:
            self._inputs = (*t.inputs, *((t.enriched,) if settings.consume_enriched else ()),
                            t.erase)
        self.consumer = consumer_factory(
            consumer_config(settings, stats_cb=self._on_stats, error_cb=self._on_error,
                            on_commit=self._on_commit)
        )
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self.producer = producer_factory(producer_config(
            settings, self.transactional_id if self.eos else None, error_cb=self._on_error))
        self._in_txn = False
        if self.eos:
            # Fences any older producer with this transactional id (a zombie of this
            # instance) and aborts its open transaction.
            self._txn_call("init_transactions", settings.transaction_timeout_ms / 1000)
        self._fatal: KafkaError | None = None
        self.aligner = Aligner(self._inputs, settings.align_max_idle_ms)
        self._consumed: dict[tuple[str, int], int] = {}
        self._eof: dict[tuple[str, int], int] = {}  # end of partition seen, at this offset
        self._start: dict[tuple[str, int], int] = {}
        self._paused: set[tuple[str, int]] = set()
        self._uncommitted: dict[tuple[str, int], int] = {}
        self._assigned: set[tuple[str, int]] = set()
        # (low, high) watermarks asked of the broker for partitions nothing was consumed
        # from since their assignment
        self._queried: dict[tuple[str, int], tuple[int, int]] = {}
        self._members: dict[int, Counter[str]] = {}
        self._last_punctuation = time.monotonic()
        self._last_commit = time.monotonic()
        self._positions: dict[tuple[str, int], int] = {}
        self._changes_ts: list[tuple[int, int]] = []
        self.batches = 0
        self.processed = 0
        self.duplicates = 0
        self.dead_letters: dict[str, int] = {}
        self._last_report = time.monotonic()

    def _owner_id(self) -> str:
        """A name for this instance that survives restarts: the static group member id,
        else an id kept in the state directory (so a restarted worker reuses its
        transactional id and fences its zombie)."""
        if self.settings.group_instance_id:
            return self.settings.group_instance_id
        path = self.settings.state_dir / self.settings.group_id / "instance.id"
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        ident = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        path.write_text(ident + "\n")
        return ident

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
        self.processor.warm_up()
        _quiet_gc()
        self.consumer.subscribe(list(self._inputs), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("worker started", extra={"ctx": {
            "instance": self.instance, "owner": self.owner, "topics": list(self._inputs),
            "group": self.settings.group_id, "guarantee": self.settings.processing_guarantee,
            "transactional_id": self.transactional_id if self.eos else None}})
        try:
            while not self._stop.is_set():
                if self._fatal is not None:
                    raise KafkaIOError(f"fatal Kafka error: {self._fatal.str()}")
                msgs = self.consumer.consume(self.settings.batch_size,
                                             self.settings.poll_timeout_s)
                self.health.tick()
                if msgs:
                    self.health.broker_ok()
                try:
                    if msgs or self.aligner.buffered() or self._punctuation_due():
                        self._process_batch(msgs)
                    if self._commit_due():
                        self._commit()
                except TransactionAborted:
                    continue
                if max_batches is not None and self.batches >= max_batches:
                    self._commit()
                    break
            else:
                self._commit()  # 0. stopping: what was processed is committed first
        finally:
            self._shutdown()

    def _commit_due(self) -> bool:
        """Commit every ``commit_interval_ms`` (Kafka Streams' commit.interval.ms): a
        transaction per poll would cost a broker round trip per few hundred events, and
        a user touched many times in an interval is written to the changelog once."""
        if not (self._positions or self._in_txn):
            return False
        elapsed = (time.monotonic() - self._last_commit) * 1000
        return elapsed >= self.settings.commit_interval_ms

    # -------------------------------------------------------------- the batch
    def _process_batch(self, msgs: list[Message]) -> None:
        started = time.perf_counter()
        now_ms = int(self.clock() * 1000)
        erase_topic = self.settings.topics.erase
        enriched_topic = self.settings.topics.enriched
        # 1. decode everything consumed and buffer it per topic-partition
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # the position the end was reached at (the last stable offset), not
                    # the watermark now: see _caught_up
                    key = (cast(str, msg.topic()), cast(int, msg.partition()))
                    self._eof[key] = cast(int, msg.offset())
                else:
                    self._consumer_error(err)
                continue
            # A consumed message always has a topic, partition and offset.
            topic = cast(str, msg.topic())
            part, offset = cast(int, msg.partition()), cast(int, msg.offset())
            key = (topic, part)
            self._consumed[key] = offset + 1
            self._eof.pop(key, None)
            try:
                if topic == erase_topic:
                    req = decode_erase(msg.value())
                    self.aligner.add(topic, part, offset, req.ts_ms, (msg, req))
                    continue
                if topic == enriched_topic:
                    enr = decode_enriched(msg.key(), msg.value(), self.settings.max_event_bytes)
                    self.aligner.add(topic, part, offset, enr.ts, (msg, enr))
                    continue
                event = self.decoder.decode(topic, msg.key(), msg.value(), now_ms)
            except InvalidEvent as exc:
                self.aligner.add(topic, part, offset, NO_TS, (msg, exc))
                continue
            self.aligner.add(topic, part, offset, event.ts_ms, (msg, event))
        # 2. process what is safe to release, in event-time order per partition number
        positions = self._positions
        changes_ts = self._changes_ts
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
        # A backlog (after a restart or a pause) is released in slices, so that the
        # commit interval still bounds each transaction and the work a crash would redo.
        for topic, part, offset, (msg, item) in self.aligner.release(
                caught_up, now_ms, limit=self.settings.batch_size * 4):
            released += 1
            positions[(topic, part)] = offset + 1
            if isinstance(item, InvalidEvent):
                self._dead_letter(msg, item)
                continue
            if isinstance(item, EraseRequest):
                self._erase(part, item)
                continue
            if isinstance(item, EnrichedReview):
                self._enriched(part, msg, item, Source(topic, part, offset))
                continue
            event = item
            store = self.stores[part]
            # time passing before this event: users whose timer is due fire first
            due = store.next_due()
            if due is not None and due < event.ts_ms:
                self._fire_timers(part, store, event.ts_ms - 1, "watermark")
            try:
                result = self.processor.process(store.get(event.user_id), event,
                                                Source(topic, part, offset))
            except InvalidEvent as exc:
                self._dead_letter(msg, exc)
                continue
            if result.duplicate:
                self.duplicates += 1
                self.metrics.duplicates.labels(topic).inc()
                continue
            counts[(topic, event.type)] = counts.get((topic, event.type), 0) + 1
            store.put(event.user_id, result.state)
            if event.ts_ms > self._max_ts:
                self._max_ts = event.ts_ms
            if self._publish(part, msg.key(), result):
                changes_ts.append((event.ts_ms, msg.timestamp()[1]))
        # 3. wall-clock punctuation for partitions with nothing buffered (optional)
        if self._punctuation_due():
            self._punctuate(now_ms)
        # 4. the models learn from the labels that matured in this batch (batched)
        if self._matured and self.models is not None:
            self._learn()
        for (topic, etype), n in counts.items():
            self.metrics.events.labels(topic, etype).inc(n)
        self._backpressure()
        self.batches += 1
        self.processed += released
        self.metrics.batch_size.observe(released)
        self.metrics.process_seconds.observe(time.perf_counter() - started)
        self._report_progress()

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 partition: int | None = None, headers: Any = None) -> None:
        """Every output goes through here: inside the batch's transaction when exactly-once."""
        if self.eos and not self._in_txn:
            self._txn_call("begin_transaction")
            self._in_txn = True
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers is not None:
            kwargs["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: serve deliveries, then retry

    def _emit(self, part: int, key: bytes | None, result: Result) -> None:
        t = self.settings.topics
        members = self._members.setdefault(part, Counter())
        counters = self._change_counters
        for ch in result.changes:
            self._produce(t.changes, key, dumps(ch))
            label = (ch["segment"], ch["change"])
            counter = counters.get(label)
            if counter is None:  # labels() takes a lock and builds a key: once per pair
                counter = counters[label] = self.metrics.changes.labels(*label)
            counter.inc()
            members[ch["segment"]] += 1 if ch["change"] == "entered" else -1
        if result.current is not None:
            self._produce(t.current, key, dumps(result.current))

    def _publish(self, part: int, key: bytes | None, result: Result) -> bool:
        """Everything an evaluation (event, timer, enriched review) gives out; True when
        it changed segments."""
        if result.alerts or result.matured:
            self._model_outputs(key, result)
        if result.requests:
            self._request(part, key, result)
        if result.changes:
            self._emit(part, key, result)
            return True
        return False

    def _request(self, part: int, key: bytes | None, result: Result) -> None:
        """Scoring requests go to the partition number of their input: the scoring
        stage's partition n then holds exactly the users of input partition n."""
        topic = self.settings.topics.scoring
        for req in result.requests:
            self._produce(topic, key, orjson.dumps(req), partition=part)
        self.metrics.scoring_requests.inc(len(result.requests))

    def _model_outputs(self, key: bytes | None, result: Result) -> None:
        for alert in result.alerts:
            self._produce(self.settings.topics.churn, key, orjson.dumps(alert))
        self._matured.extend(result.matured)

    def _learn(self) -> None:
        """Test-then-train on the batch's matured labels; drift detections are events."""
        assert self.models is not None
        examples, self._matured = self._matured, []
        for hit in self.models.learn(examples, at_ms=self._max_ts):
            record = {"schema_version": 1, "type": "model.drift", **hit,
                      "model_version": self.models.model_version, "worker": self.instance}
            self._produce(self.settings.topics.model_events, str(hit["model"]).encode(),
                          orjson.dumps(record))
            log.warning("model drift detected", extra={"ctx": record})

    def _models_after_commit(self, positions: dict[tuple[str, int], int],
                             force: bool = False) -> None:
        """Refresh model metrics; snapshot the suite with the offsets it has seen."""
        if self.models is None:
            return
        from models.learn.snapshot import save

        for (t, p), o in positions.items():
            self._model_offsets[f"{t}/{p}"] = o
        now = time.monotonic()
        cfg = self.models.cfg
        if force or now - self._last_snapshot >= cfg.snapshot_interval_s:
            self._last_snapshot = now
            path = save(self.models, cfg.snapshot_dir, dict(self._model_offsets),
                        keep=cfg.snapshot_keep)
            self._snapshot_meta = {"created": time.time(), "bytes": path.stat().st_size}
            log.info("model snapshot saved", extra={"ctx": {
                "path": str(path), "bytes": self._snapshot_meta["bytes"],
                "model_version": self.models.model_version}})
        if self.model_metrics is not None and (force or now - self._last_model_refresh >= 5):
            self._last_model_refresh = now
            self.model_metrics.refresh(self.models,
                                       snapshot_created=self._snapshot_meta.get("created"),
                                       snapshot_bytes=self._snapshot_meta.get("bytes"))

    def _fire_timers(self, part: int, store: PartitionStore, upto: int, trigger: str,
                     as_of: int | None = None) -> int:
        fired = 0
        for user_id in store.pop_due(upto):
            state = store.get(user_id)
            if state is None:
                continue
            result = self.processor.fire_timer(
                user_id, state, state.timer_due if as_of is None else as_of)
            store.put(user_id, result.state)
            self._publish(part, user_id.encode(), result)
            fired += 1
        if fired:
            self.metrics.timers_fired.labels(trigger).inc(fired)
        return fired

    def _punctuation_due(self) -> bool:
        every = self.settings.wall_clock_punctuation_s
        return bool(every) and time.monotonic() - self._last_punctuation >= every

    def _punctuate(self, now_ms: int) -> None:
        """Wall-clock time passes for partitions whose inputs are idle: users whose timer
        lies before now minus the allowed lateness are re-evaluated as of that time."""
        self._last_punctuation = time.monotonic()
        as_of = now_ms - self.settings.allowed_lateness_s * 1000
        for part, store in self.stores.items():
            if self.aligner.buffered(part):
                continue
            self._fire_timers(part, store, as_of, "wall_clock", as_of=as_of)

    def _enriched(self, part: int, msg: Message, enr: EnrichedReview, source: Source) -> None:
        store = self.stores[part]
        state = store.get(enr.user_id)
        result = (self.processor.process_enriched(state, enr, source) if state is not None
                  else None)
        if result is None or result.duplicate:
            # the review is no longer held (pruned, erased): nothing to fold in
            self.metrics.events.labels(source.topic, "enriched_unmatched").inc()
            return
        self.metrics.events.labels(source.topic, "review_enriched").inc()
        store.put(enr.user_id, result.state)
        # an enriched review is an evaluation like an event's: its matured labels,
        # alerts and scoring requests count as well
        self._publish(part, msg.key(), result)

    def _erase(self, part: int, req: EraseRequest) -> None:
        """Forget a user: state (changelog tombstone), current record (tombstone), pending
        labels and timers (they live in the state); then an audit record."""
        t = self.settings.topics
        store = self.stores[part]
        state = store.get(req.user_id)
        segments = sorted(state.segments) if state is not None else []
        key = req.user_id.encode()
        if state is not None:
            store.delete(req.user_id)
            members = self._members.setdefault(part, Counter())
            for seg in segments:
                members[seg] -= 1
        self._produce(t.current, key, None)
        audit = audit_record(req, partition=part, had_state=state is not None,
                             segments=segments, done_at=iso(int(time.time() * 1000)),
                             instance=self.instance, stage=self.settings.role,
                             current_topic=t.current)
        self._produce(t.audit, req.request_id.encode(), orjson.dumps(audit))
        self.metrics.erasures.inc()
        log.info("user erased", extra={"ctx": {"request_id": req.request_id,
                                               "partition": part,
                                               "had_state": state is not None}})

    def _report_progress(self, every_s: float = 60.0) -> None:
        """One summary line a minute: throughput and the dead-letter count by reason."""
        now = time.monotonic()
        if now - self._last_report < every_s:
            return
        self._last_report = now
        log.info("progress", extra={"ctx": {
            "processed": self.processed, "batches": self.batches,
            "duplicates": self.duplicates,
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
        eof_at = self._eof.get(key)
        if eof_at is not None:
            if hi < 0 or hi <= eof_at:
                return True
            # The high watermark is past where the end was reached: either new data is
            # on its way, or the log ends in a transaction still open, which
            # read_committed cannot read past. Such a transaction may commit a moment
            # later (its markers reach the partitions one by one, so a sibling's share
            # can already be visible) or stay open up to the producer's transaction
            # timeout; either way wait at most max_idle_ms rather than release the
            # siblings' newer events ahead of this partition's older ones.
            return None
        if hi < 0 or key not in self._consumed:
            # Nothing consumed from it yet (e.g. just assigned): ask the broker once rather
            # than let the idle timeout release its siblings without it, which would
            # make the event-time order depend on fetch timing. A partition assigned
            # again still has the watermark cached from its earlier assignment (e.g. 0,
            # from before any data existed), which would make it look caught up and
            # release its siblings ahead of it: their older events would turn late.
            if key not in self._queried:
                self._queried[key] = (-1, -1)
                try:
                    self._queried[key] = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, part), timeout=5, cached=False)
                except KafkaException:
                    return None
            lo, hi = self._queried[key]
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

    # ------------------------------------------------------------ committing
    def _commit(self) -> None:
        """Commit everything processed since the last commit (outputs, state, offsets)."""
        positions, changes_ts = self._positions, self._changes_ts
        self._positions, self._changes_ts = {}, []
        self._last_commit = time.monotonic()
        started = time.perf_counter()
        changelog = self.settings.topics.changelog
        # 1. the batch's state writes go to each partition's changelog
        staged: dict[int, int] = {}
        for part, store in self.stores.items():
            writes = store.stage()
            for user_id, raw in writes:
                self._produce(changelog, user_id.encode(), raw, partition=part)
            if writes:
                staged[part] = len(writes)
        if self.eos:
            if not self._in_txn and not positions:
                return
            self._commit_transaction(positions)
        else:
            # 2. outputs: wait until the broker acknowledged every record of the batch
            remaining = self.producer.flush(120)
            if remaining or self._delivery_errors:
                errors, self._delivery_errors = self._delivery_errors, []
                raise DeliveryError(f"{remaining} outputs unacknowledged; errors: {errors[:5]}")
        self._account_outputs(changes_ts)
        # 3. state: users, changelog checkpoint and next input offsets, one atomic write per
        #    partition store (after the commit: the store never runs ahead of Kafka)
        by_part: dict[int, dict[str, int]] = {}
        for (topic, part), nxt in positions.items():
            by_part.setdefault(part, {})[topic] = nxt
        for part in set(by_part) | set(staged):
            store = self.stores[part]
            hi = self._changelog_hi.pop(part, None)
            store.flush(by_part.get(part, {}),
                        changelog_next=hi + 1 if hi is not None else None, owner=self.owner)
        self._changelog_hi.clear()
        self._models_after_commit(positions)
        if positions and not self.eos:
            # 4. group: commit the same offsets asynchronously. The store is authoritative
            #    in this mode; the group's copy serves lag monitoring and a new owner, and
            #    is committed synchronously when partitions are revoked and at shutdown.
            self._uncommitted.update(positions)
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                asynchronous=True,
            )
        self.metrics.commit_seconds.observe(time.perf_counter() - started)

    def _commit_transaction(self, positions: dict[tuple[str, int], int]) -> None:
        """Steps 2-3 of exactly-once: deliver, send offsets, commit; abort on failure."""
        started = time.perf_counter()
        timeout = self.settings.transaction_timeout_ms / 1000
        if not self._in_txn:
            self._txn_call("begin_transaction")
            self._in_txn = True
        # 2a. deliver everything produced in the transaction (errors surface here)
        remaining = self.producer.flush(timeout)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            self._abort_and_rewind(f"{remaining} unacknowledged; {errors[:3]}", "delivery")
        # 2b. the input positions become part of the transaction
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        if offsets:
            self._txn_call("send_offsets_to_transaction", offsets,
                           self.consumer.consumer_group_metadata(), timeout)
        # 2c. commit: outputs, changelog and offsets become visible atomically
        self._txn_call("commit_transaction", timeout)
        self._in_txn = False
        self.metrics.transaction_seconds.observe(time.perf_counter() - started)

    def _txn_call(self, name: str, *args: Any) -> Any:
        """Call a transactional producer method, handling the error classes:
        retriable -> retry; abortable -> abort and rewind; fatal or fenced -> stop.

        A call that times out ``TIMEOUTS_WEDGED`` times in a row counts as wedged: after a
        broker restart librdkafka can keep the coordinator request queued on a dead
        connection ("TxnCoordinator: Timed out ... 1 out-queue") and time out every retry
        although the broker is back. Its replacement's ``init_transactions`` aborts the
        open transaction (``init_transactions`` itself is only retried).
        """
        timeouts = 0
        for attempt in range(10):
            try:
                return self._bounded(name, *args)
            except _Wedged:
                self._replace_producer(name)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal() or err.code() in (KafkaError._FENCED,
                                                 KafkaError.PRODUCER_FENCED,
                                                 KafkaError.INVALID_PRODUCER_EPOCH):
                    self.metrics.transaction_aborts.labels("fatal").inc()
                    raise KafkaIOError(
                        f"transactional producer unusable ({name}: {err.str()}); another "
                        f"instance with transactional id {self.transactional_id!r} may have "
                        "taken over, or the broker fenced this one. Stopping.") from None
                if err.txn_requires_abort() and name != "abort_transaction":
                    self._abort_and_rewind(f"{name}: {err.str()}", err.name().lower())
                if err.retriable():
                    timeouts = timeouts + 1 if err.code() == KafkaError._TIMED_OUT else 0
                    if timeouts >= TIMEOUTS_WEDGED and name != "init_transactions":
                        self._replace_producer(name)
                    log.warning("transactional call failed, retrying", extra={"ctx": {
                        "call": name, "error": err.str(), "attempt": attempt + 1}})
                    time.sleep(min(5.0, 0.2 * 2 ** attempt))
                    continue
                raise KafkaIOError(f"{name} failed: {err.str()}") from None
        raise KafkaIOError(f"{name} still failing after 10 attempts")

    def _bounded(self, name: str, *args: Any) -> Any:
        """Run a transactional call with a deadline. librdkafka can block in
        ``send_offsets_to_transaction``/``commit_transaction`` past their timeout after
        the broker restarts (librdkafka issues 5456, 5511); the loop must not hang."""
        if name == "begin_transaction":
            return self.producer.begin_transaction()  # local, never blocks
        done = threading.Event()
        box: dict[str, Any] = {}
        producer = self.producer

        def call() -> None:
            try:
                box["result"] = getattr(producer, name)(*args)
            except BaseException as exc:  # handed to the caller's thread unchanged
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name=f"txn-{name}", daemon=True).start()
        if not done.wait(self.settings.transaction_timeout_ms / 1000 + 15):
            raise _Wedged(name)
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def _replace_producer(self, name: str) -> NoReturn:
        """A wedged producer is replaced by a new one with the same transactional id:
        its ``init_transactions`` fences the old one and aborts the open transaction,
        then the batch is forgotten and the consumer rewound to the committed offsets."""
        log.error("transactional producer blocked past its timeout; replacing it",
                  extra={"ctx": {"call": name, "transactional_id": self.transactional_id}})
        self.metrics.transaction_aborts.labels("producer_replaced").inc()
        self.producer = self._producer_factory(producer_config(
            self.settings, self.transactional_id, error_cb=self._on_error))
        deadline = time.monotonic() + 600
        while True:
            try:
                self._bounded("init_transactions", self.settings.transaction_timeout_ms / 1000)
                break
            except (_Wedged, KafkaException) as exc:
                if time.monotonic() > deadline:
                    raise KafkaIOError(f"cannot re-initialise the transactional producer: "
                                       f"{exc}") from None
                log.warning("waiting for the broker to re-initialise transactions",
                            extra={"ctx": {"error": str(exc)}})
                time.sleep(2)
        self._forget_batch()
        raise TransactionAborted(f"{name} wedged; producer replaced")

    def _abort_and_rewind(self, why: str, reason: str) -> None:
        """Abort the transaction, forget the batch's state, rewind to the committed
        positions; raises :class:`TransactionAborted` to restart the loop iteration."""
        log.warning("transaction aborted; rewinding to the committed positions",
                    extra={"ctx": {"error": why}})
        self.metrics.transaction_aborts.labels(reason[:40]).inc()
        # The broker may still be down (records time out after the transaction timeout):
        # a timed-out abort is retried like any transactional call, and a wedged one
        # replaces the producer, whose initialisation aborts the transaction instead.
        self._txn_call("abort_transaction", self.settings.transaction_timeout_ms / 1000)
        self._forget_batch()
        raise TransactionAborted(why)

    def _forget_batch(self) -> None:
        """Drop everything processed since the last commit (its transaction is gone) and
        rewind the consumer to the committed positions."""
        self._in_txn = False
        self._positions, self._changes_ts, self._matured = {}, [], []
        self._delivery_errors.clear()
        self._acked.clear()
        self._changelog_hi.clear()
        for store in self.stores.values():
            store.discard()
        self._rewind()

    def _rewind(self) -> None:
        parts = {p for _, p in self._assigned}
        self.aligner.drop(parts)
        self._consumed.clear()
        self._eof.clear()
        self._queried.clear()
        if self._paused:
            self.consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused.clear()
        tps = [TopicPartition(t, p) for t, p in sorted(self._assigned)]
        for tp in self.consumer.committed(tps, timeout=30):
            off = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, off))
        self._recount_members(parts)

    def _account_outputs(self, changes_ts: list[tuple[int, int]]) -> None:
        for topic, n in self._acked.items():
            self.metrics.outputs.labels(topic).inc(n)
        self._acked.clear()
        now = time.time()
        for event_ms, append_ms in changes_ts:
            self.metrics.e2e_event_seconds.observe(max(0.0, now - event_ms / 1000))
            if append_ms > 0:
                self.metrics.e2e_append_seconds.observe(max(0.0, now - append_ms / 1000))
        total: Counter[str] = Counter()
        for counts in self._members.values():
            total.update(counts)
        for seg, n in total.items():
            self.metrics.segment_members.labels(seg).set(n)

    def _dead_letter(self, msg: Message, exc: InvalidEvent) -> None:
        self.dead_letters[exc.reason] = self.dead_letters.get(exc.reason, 0) + 1
        self.metrics.dlq.labels(exc.reason).inc()
        self.metrics.events.labels(msg.topic(), "invalid").inc()
        log.warning("event dead-lettered", extra={"ctx": {
            "reason": exc.reason, "detail": exc.detail[:300], "topic": msg.topic(),
            "partition": msg.partition(), "offset": msg.offset()}})
        self._produce(self.settings.topics.dlq, msg.key(), msg.value(),
                      headers=dlq_headers(msg, exc, self.instance))

    # -------------------------------------------------------------- callbacks
    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")
            return
        t = cast(str, msg.topic())
        self._acked[t] = self._acked.get(t, 0) + 1
        if t == self.settings.topics.changelog:
            part, off = cast(int, msg.partition()), cast(int, msg.offset())
            if off > self._changelog_hi.get(part, -1):
                self._changelog_hi[part] = off

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None:
            self.metrics.commit_failures.inc()
            log.warning("offset commit refused; the local store holds the position",
                        extra={"ctx": {"error": err.str()}})

    def _commit_group_sync(self) -> None:
        """Commit the latest processed positions synchronously (at-least-once: revoke and
        shutdown; exactly-once commits offsets in each transaction instead)."""
        if not self._uncommitted or self.eos:
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
        if err.fatal() or err.code() == KafkaError._FATAL:
            raise KafkaIOError(f"fatal consumer error: {err.str()}")
        self.metrics.consumer_errors.labels(err.name()).inc()
        log.warning("consumer error", extra={"ctx": {"error": err.str()}})

    def _on_stats(self, raw: str) -> None:
        stats = orjson.loads(raw)
        if any(b.get("state") == "UP" for b in stats.get("brokers", {}).values()):
            self.health.broker_ok()
        if stats.get("cgrp", {}).get("join_state") == "steady" and not self._assigned:
            self.health.assigned([])  # a member without partitions is ready too
        for tname, topic in stats.get("topics", {}).items():
            for pid, p in topic.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if pid != "-1" and lag >= 0:
                    self.metrics.lag.labels(tname, pid).set(lag)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Open and restore the stores of newly assigned partition numbers, then resume
        from the committed offsets (exactly-once) or the stores' offsets (at-least-once)."""
        self.health.assigned({tp.partition for tp in partitions})
        new_parts = sorted({tp.partition for tp in partitions} - set(self.stores))
        if new_parts:
            restorer = self._consumer_factory(restore_consumer_config(self.settings))
            try:
                for part in new_parts:
                    self.stores[part] = PartitionStore(
                        self._store_path(part),
                        # the decoded-state caches of all stores together stay within
                        # cache_users (bounded memory however many users exist)
                        cache_size=max(100, self.settings.cache_users
                                       // max(1, self.settings.partitions)),
                        write_buffers=self._write_buffers)
                    self._restore(restorer, part)
                    self.health.restored(part)
            finally:
                restorer.close()
        if not self.eos:
            self._alo_positions(consumer, partitions)
        else:
            # Start exactly at the committed offsets, fetched once the previous owner's
            # last transaction is stable, and matching the state just restored.
            for tp, got in zip(partitions, self._stable_committed(consumer, partitions),
                               strict=True):
                if got >= 0:
                    self._start[(tp.topic, tp.partition)] = got
                    tp.offset = got
        if self.settings.group_protocol == "consumer":
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self.metrics.assigned.set(len(self._assigned))
        self._update_store_gauge()
        log.info("partitions assigned", extra={"ctx": {
            "partitions": sorted({p for _, p in self._assigned}),
            "added": sorted({tp.partition for tp in partitions}), "restored": new_parts}})

    def _stable_committed(self, consumer: Consumer, partitions: list[TopicPartition],
                          wait_s: float = 60.0) -> list[int]:
        """Committed offsets of ``partitions``; a partition whose offsets are still part
        of a finishing transaction (UNSTABLE_OFFSET_COMMIT) is asked again."""
        deadline = time.monotonic() + wait_s
        while True:
            got = consumer.committed([TopicPartition(tp.topic, tp.partition)
                                      for tp in partitions], timeout=30)
            if not any(tp.error is not None for tp in got) or time.monotonic() > deadline:
                return [tp.offset if tp.error is None else -1001 for tp in got]
            time.sleep(0.2)

    def _restore(self, consumer: Consumer, part: int) -> None:
        store = self.stores[part]
        label = str(part)

        def progress(records: int, remaining: int) -> None:
            self.metrics.restore_remaining.labels(label).set(remaining)

        res = restore_partition(consumer, self.settings.topics.changelog, part, store,
                                self.owner, progress=progress)
        self.metrics.restore_records.labels(label).inc(res.records)
        self.metrics.restore_remaining.labels(label).set(0)
        self.metrics.restore_seconds.observe(res.seconds)
        self._recount_members({part})
        log.info("partition restored", extra={"ctx": {
            "partition": part, "records": res.records, "seconds": round(res.seconds, 3),
            "from_offset": res.start_offset, "to_offset": res.end_offset,
            "from_scratch": res.from_scratch}})

    def _recount_members(self, parts: set[int]) -> None:
        for part in parts:
            store = self.stores.get(part)
            if store is None:
                continue
            counts: Counter[str] = Counter()
            for _, state in store.iter_states():
                counts.update(state.segments.keys())
            self._members[part] = counts

    def _alo_positions(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """At-least-once: the store's offsets are authoritative (never behind the group)."""
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
                    ahead.append(TopicPartition(tp.topic, tp.partition, stored))
                tp.offset = stored
        if ahead:
            consumer.commit(offsets=ahead, asynchronous=True)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # What was processed is committed before the partitions go, so the next owner
        # starts exactly where this worker stopped.
        if self._fatal is None:
            self._commit()
        self._commit_group_sync()
        self._release(partitions)
        if self.settings.group_protocol == "consumer":
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost", extra={"ctx": {"partitions": [tp.partition
                                                                       for tp in partitions]}})
        self._uncommitted.clear()
        self._release(partitions)
        if self.settings.group_protocol == "consumer":
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _release(self, partitions: list[TopicPartition]) -> None:
        # What was learnt about each released partition's position goes with it: if it
        # comes back, librdkafka's cached watermark for it may be stale (see _caught_up).
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.discard(key)
            self._consumed.pop(key, None)
            self._eof.pop(key, None)
            self._queried.pop(key, None)
        still = {p for _, p in self._assigned}
        gone = {tp.partition for tp in partitions} - still
        self._close_stores(gone)
        self.health.revoked(gone)
        self.metrics.assigned.set(len(self._assigned))
        log.info("partitions revoked", extra={"ctx": {
            "partitions": sorted(still), "removed": sorted(gone)}})

    # ---------------------------------------------------------------- helpers
    def _store_path(self, partition: int) -> Path:
        return self.settings.state_dir / self.settings.group_id / f"p{partition}"

    def _close_stores(self, parts: set[int]) -> None:
        # Buffered messages of these partitions were never committed: the next owner
        # (or this worker after reassignment) fetches them again from the committed offsets.
        self.aligner.drop(parts)
        self._paused = {k for k in self._paused if k[1] not in parts}
        # (consumed/EOF/queried positions go per topic-partition in _release)
        for positions in (self._start, self._uncommitted):
            for key in [k for k in positions if k[1] in parts]:
                del positions[key]
        for p in parts:
            self._members.pop(p, None)
            store = self.stores.pop(p, None)
            if store is not None:
                store.close()

    def _update_store_gauge(self) -> None:
        self.metrics.store_users.set(sum(s.users() for s in self.stores.values()))

    def _shutdown(self) -> None:
        self.health.stopping()
        # 1. an unfinished transaction is aborted (its batch was not committed); queued
        #    at-least-once outputs are delivered (or reported) before leaving
        if self.eos and self._in_txn:
            try:
                self.producer.abort_transaction(10)
            except KafkaException as exc:
                log.warning("abort at shutdown failed", extra={"ctx": {
                    "error": exc.args[0].str()}})
            self._in_txn = False
        remaining = self.producer.flush(30)
        if remaining:
            log.error("outputs not acknowledged at shutdown; they were not committed",
                      extra={"ctx": {"remaining": remaining}})
        # 2. the group gets the final positions; the stores close (each batch was stored)
        self._commit_group_sync()
        self._close_stores(set(self.stores))
        if self.models is not None:
            self._models_after_commit({}, force=True)
        # 3. the consumer leaves the group so its partitions move at once
        self.consumer.close()
        log.info("worker stopped", extra={"ctx": {"batches": self.batches,
                                                  "processed": self.processed,
                                                  "duplicates": self.duplicates,
                                                  "dead_letters": dict(self.dead_letters)}})


def _quiet_gc() -> None:
    """Keep garbage collection out of the latency tail.

    A full collection walks every tracked object: the jieba dictionary, river and
    numpy internals and the cached user states, 100-300 ms on a 2-core machine, which
    was the p99 of end-to-end latency. What exists after start-up lives as long as the
    process, so it is frozen out of collections; the youngest generation is collected
    less often (each event allocates a few short-lived containers, almost none cyclic).
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(20_000, second, third)
