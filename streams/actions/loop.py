"""The actions app's consume-process-produce loop: exactly one action record per change.

The loop runs in a thread of the faust worker (the worker keeps serving the web views,
which read :class:`Tables`). It is a plain confluent-kafka loop because faust-streaming
0.15.3 cannot put records for topics its consumer does not read (the action and DLQ
topics) into its transactions.

Exactly-once (``SEGSTREAM_ACTIONS_GUARANTEE=exactly_once``, the default). Per batch of
input records (segment changes and churn alerts, one consumer in group ``<app id>``):

1. the transactional producer begins a transaction;
2. every action record, every dead letter and every state write (the changelog topics
   ``<app id>-users-changelog``, ``-budgets-changelog``, ``-churn-changelog``, on the
   partition number of the input) is produced in it, while the batch's state changes are
   held apart from the committed state;
3. the input positions go into the transaction (``send_offsets_to_transaction`` with
   the consumer's group metadata) and the transaction commits: actions, state and
   offsets become visible together or not at all. Only then does the batch's state join
   the committed state the next batch and the web views read.

An abortable error aborts the transaction, drops the batch's state and rewinds the
consumer to the batch's first offsets. The transactional id is ``<app id>-<instance
id>``, the instance id persisted in ``SEGSTREAM_ACTIONS_STATE_DIR``: a restarted
instance fences its killed predecessor and aborts its open transaction at once (no wait
for the transaction timeout); a different instance taking over partitions is fenced by
the group generation in the offsets it sends. On assignment the state of the assigned
partitions is rebuilt from the changelogs by a ``read_committed`` consumer, so records
of an aborted transaction are never part of it.

At-least-once (``at_least_once``): the same loop without a transaction; outputs and
changelog records are flushed before the offsets are committed, so a crash can repeat a
batch's actions (byte-identical, same ``action_id``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.contracts import decode_change, decode_churn_alert
from streams.actions.engine import (
    AlertAction,
    ChurnAlertAction,
    CouponAction,
    HoldoutAction,
    RouteAction,
    Rules,
    budget_key,
    budget_share,
    dump_state,
    encode,
    handle_change,
    handle_churn_alert,
    load_churn,
    load_user,
)
from streams.exceptions import InvalidEvent, KafkaIOError
from streams.kafka.dlq import dlq_headers
from streams.metrics import ActionsMetrics

log = logging.getLogger(__name__)

TABLES = ("users", "budgets", "churn")
KIND: dict[type, str] = {CouponAction: "coupon", HoldoutAction: "holdout", RouteAction: "route",
                         AlertAction: "alert", ChurnAlertAction: "churn_alert"}
TXN_TIMEOUT_S = 60.0


def instance_id(config: ActionsConfig) -> str:
    """This instance's id, created once and kept in the state directory.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> c = ActionsConfig(state_dir=d)
    >>> instance_id(c) == instance_id(c) and len(instance_id(c)) == 12
    True
    """
    path = config.state_dir / "instance-id"
    try:
        found = path.read_text().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    config.state_dir.mkdir(parents=True, exist_ok=True)
    new = uuid.uuid4().hex[:12]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return new


@dataclass
class Tables:
    """Committed state: table -> input partition -> key -> value (the changelog's bytes).

    Written by the loop thread only after a transaction committed; the web views read it.
    """

    data: dict[str, dict[int, dict[bytes, bytes]]] = field(
        default_factory=lambda: {t: {} for t in TABLES})

    def get(self, table: str, key: bytes) -> bytes | None:
        """A key's value in whichever held partition has it (a user lives on one)."""
        for part in list(self.data[table].values()):
            value = part.get(key)
            if value is not None:
                return value
        return None

    def user(self, key: bytes) -> bytes | None:
        return self.get("users", key)


class Batch:
    """One batch's state writes, held apart from the committed :class:`Tables`.

    >>> t = Tables(); t.data["users"][0] = {b"u": b"old"}
    >>> b = Batch(t); b.put("users", 0, b"u", b"new")
    >>> b.get("users", 0, b"u"), t.data["users"][0][b"u"]
    (b'new', b'old')
    >>> b.apply(); t.data["users"][0][b"u"]
    b'new'
    """

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.writes: dict[tuple[str, int], dict[bytes, bytes]] = {}

    def get(self, table: str, part: int, key: bytes) -> bytes | None:
        staged = self.writes.get((table, part))
        if staged is not None and key in staged:
            return staged[key]
        return self.tables.data[table].get(part, {}).get(key)

    def put(self, table: str, part: int, key: bytes, value: bytes) -> None:
        self.writes.setdefault((table, part), {})[key] = value

    def apply(self) -> None:
        for (table, part), values in self.writes.items():
            self.tables.data[table].setdefault(part, {}).update(values)


class ActionLoop:
    """Consume changes and churn alerts, decide, produce actions and state: see the module
    docstring. :meth:`start` runs it in a thread; :meth:`stop` ends it after the batch in
    hand and leaves the group."""

    def __init__(self, config: ActionsConfig, book: CampaignBook, metrics: ActionsMetrics,
                 tables: Tables, *, batch_size: int = 500,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.config = config
        self.book = book
        self.rules = Rules(book=book, holdout_seed=config.holdout_seed)
        self.metrics = metrics
        self.tables = tables
        self.batch_size = batch_size
        self.eos = config.guarantee == "exactly_once"
        self.on_fatal = on_fatal
        t = config.topics
        self.out = {"coupon": t.coupons, "holdout": t.holdout, "route": t.vip_routing,
                    "alert": t.alerts, "churn_alert": t.churn_alerts}
        self.changelog = {name: config.changelog_topic(name) for name in TABLES}
        self.transactional_id = f"{config.app_id}-{instance_id(config)}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[str] = []
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="actions-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported, then the process ends
            log.critical("actions loop stopped: %s", exc, exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def run(self) -> None:
        common = self.config.kafka_common()
        pconf: dict[str, Any] = {**common, "enable.idempotence": True, "acks": "all",
                                 "linger.ms": 5}
        if self.eos:
            pconf["transactional.id"] = self.transactional_id
            pconf["transaction.timeout.ms"] = int(TXN_TIMEOUT_S * 1000)
        self.producer = Producer(pconf)
        if self.eos:
            # fences an older producer with this id and aborts its open transaction, so the
            # changelogs read below end at a stable offset
            self._retry("init_transactions", TXN_TIMEOUT_S)
        self.consumer = Consumer({
            **common, "group.id": self.config.app_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
        t = self.config.topics
        self.consumer.subscribe([t.changes, t.churn], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("actions loop: group %s, %s, transactional id %s", self.config.app_id,
                 self.config.guarantee, self.transactional_id if self.eos else "-")
        try:
            while not self._stop.is_set():
                msgs = self.consumer.consume(self.batch_size, 0.2)
                good = []
                for m in msgs:
                    err = m.error()
                    if err is None:
                        good.append(m)
                    elif err.fatal():
                        raise KafkaIOError(f"consumer failed: {err.str()}")
                    elif err.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", err.str())
                if good:
                    self._process(good)
        finally:
            self.consumer.close()
            self.producer.flush(30)

    # ------------------------------------------------------------------ rebalances
    def _tables_of(self, topic: str) -> tuple[str, ...]:
        return ("users", "budgets") if topic == self.config.topics.changes else ("churn",)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            for table in self._tables_of(tp.topic):
                self.tables.data[table].pop(tp.partition, None)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        todo = [(table, tp.partition) for tp in partitions for table in self._tables_of(tp.topic)]
        started = time.monotonic()
        restored = self._restore(todo)
        log.info("restored %d state records of %d partition(s) in %.2fs", restored,
                 len(partitions), time.monotonic() - started)

    def _restore(self, todo: list[tuple[str, int]], timeout: float = 600.0) -> int:
        """Read the changelog partitions of ``todo`` from the start to their stable end."""
        if not todo:
            return 0
        c = Consumer({**self.config.kafka_common(), "group.id": f"{self.config.app_id}-restore",
                      "enable.auto.commit": False, "isolation.level": "read_committed",
                      "enable.partition.eof": True, "auto.offset.reset": "earliest"})
        fresh: dict[tuple[str, int], dict[bytes, bytes]] = {k: {} for k in todo}
        by_topic = {self.changelog[table]: table for table in TABLES}
        waiting = {(self.changelog[table], part) for table, part in todo}
        count = 0
        deadline = time.monotonic() + timeout
        try:
            c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for topic, part in waiting])
            while waiting:
                if time.monotonic() > deadline:
                    raise KafkaIOError(f"changelog restore did not finish: {sorted(waiting)}")
                for m in c.consume(5000, 0.2):
                    err = m.error()
                    topic, part = m.topic() or "", m.partition() or 0
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            waiting.discard((topic, part))
                        elif err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            raise KafkaIOError(f"changelog restore failed: {err.str()}")
                        continue
                    key, value = m.key(), m.value()
                    if key is None:
                        continue
                    values = fresh[(by_topic[topic], part)]
                    if value is None:
                        values.pop(key, None)
                    else:
                        values[key] = value
                    count += 1
        finally:
            c.close()
        for (table, part), values in fresh.items():
            self.tables.data[table][part] = values
        return count

    # ------------------------------------------------------------------ processing
    def _produce(self, topic: str, key: bytes | None, value: bytes, partition: int,
                 headers: list[tuple[str, Any]] | None = None) -> None:
        assert self.producer is not None
        cb = None if self.eos else self._delivered
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, partition=partition,
                                      headers=headers, on_delivery=cb)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(err.str())

    def _process(self, msgs: list[Message]) -> None:
        assert self.producer is not None and self.consumer is not None
        first: dict[tuple[str, int], int] = {}
        nxt: dict[tuple[str, int], int] = {}
        for m in msgs:
            tp = (m.topic() or "", m.partition() or 0)
            first.setdefault(tp, m.offset() or 0)
            nxt[tp] = (m.offset() or 0) + 1
        batch = Batch(self.tables)
        counts: list[Callable[[], None]] = []
        try:
            if self.eos:
                self.producer.begin_transaction()
            for m in msgs:
                if m.topic() == self.config.topics.changes:
                    self._change(m, batch, counts)
                else:
                    self._churn(m, batch, counts)
            offsets = [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
            if self.eos:
                self._retry("send_offsets_to_transaction", offsets,
                            self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
                self._retry("commit_transaction", TXN_TIMEOUT_S)
            else:
                if self.producer.flush(TXN_TIMEOUT_S) or self._errors:
                    raise KafkaIOError(f"actions not delivered: {self._errors[:3]}")
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if not (self.eos and err.txn_requires_abort()):
                raise
            log.warning("transaction aborted, the batch is retried: %s", err.str())
            self._retry("abort_transaction", TXN_TIMEOUT_S)
            for (topic, part), offset in first.items():
                self.consumer.seek(TopicPartition(topic, part, offset))
            return
        batch.apply()
        for count in counts:
            count()

    def _retry(self, name: str, *args: Any) -> Any:
        """A transactional call, repeated while the error is retriable."""
        assert self.producer is not None
        deadline = time.monotonic() + TXN_TIMEOUT_S
        while True:
            try:
                return getattr(self.producer, name)(*args)
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _dead_letter(self, m: Message, exc: InvalidEvent, role: str,
                     counts: list[Callable[[], None]]) -> None:
        self._produce(self.config.topics.dlq, m.key(), m.value() or b"", m.partition() or 0,
                      dlq_headers(m, exc, self.config.app_id))

        def count() -> None:
            self.metrics.dlq.labels(exc.reason).inc()
            self.metrics.inputs.labels(role, "dlq").inc()
        counts.append(count)

    def _actions(self, key: bytes, part: int, actions: list[Any],
                 counts: list[Callable[[], None]]) -> None:
        # the input's partition number: a user's actions stay on one partition, in order
        for a in actions:
            kind = KIND[type(a)]
            self._produce(self.out[kind], key, encode(a), part)
            counts.append(self.metrics.actions.labels(kind).inc)

    def _put(self, batch: Batch, table: str, part: int, key: bytes, value: bytes) -> None:
        batch.put(table, part, key, value)
        self._produce(self.changelog[table], key, value, part)

    def _change(self, m: Message, batch: Batch, counts: list[Callable[[], None]]) -> None:
        started = time.perf_counter()
        try:
            change = decode_change(m.key(), m.value(), self.config.max_event_bytes)
        except InvalidEvent as exc:
            self._dead_letter(m, exc, "changes", counts)
            return
        part, n = m.partition() or 0, self.config.partitions
        key = change.user_id.encode()
        spend: dict[str, tuple[int, int | None]] = {}
        for c in self.book.triggered_by(change.segment, change.change):
            if c.coupon is not None and c.daily_budget is not None:
                spent = batch.get("budgets", part,
                                  budget_key(c.name, change.at_ms, part).encode())
                spend[c.name] = (int(spent or 0), budget_share(c.daily_budget, part, n))
        result = handle_change(load_user(batch.get("users", part, key)), change, self.rules,
                               spend)
        inputs = self.metrics.inputs
        if result.outcomes and result.outcomes[0][0] == "*":
            counts.append(inputs.labels("changes", result.outcomes[0][1]).inc)
            return
        self._actions(key, part, result.actions, counts)
        self._put(batch, "users", part, key, dump_state(result.user))
        for name, spent_now in result.spent.items():
            self._put(batch, "budgets", part, budget_key(name, change.at_ms, part).encode(),
                      str(spent_now).encode())
        for name, outcome in result.outcomes:
            counts.append(self.metrics.decisions.labels(name, outcome).inc)
        counts.append(inputs.labels("changes", "processed").inc)
        elapsed = time.perf_counter() - started
        counts.append(lambda: self.metrics.process_seconds.observe(elapsed))

    def _churn(self, m: Message, batch: Batch, counts: list[Callable[[], None]]) -> None:
        try:
            alert = decode_churn_alert(m.key(), m.value(), self.config.max_event_bytes)
        except InvalidEvent as exc:
            self._dead_letter(m, exc, "churn", counts)
            return
        part = m.partition() or 0
        key = alert.user_id.encode()
        state, actions = handle_churn_alert(load_churn(batch.get("churn", part, key)), alert,
                                            self.rules)
        if not actions:
            counts.append(self.metrics.inputs.labels("churn", "duplicate").inc)
            return
        self._actions(key, part, actions, counts)
        self._put(batch, "churn", part, key, dump_state(state))
        counts.append(self.metrics.inputs.labels("churn", "processed").inc)
