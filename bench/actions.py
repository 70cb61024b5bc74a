"""Throughput of ``segstream actions`` against a raw consume of the same topic.

Produces N segment changes to a fresh topic on the local broker, then measures, in the
same run:

1. raw: confluent-kafka ``consume(1000)`` + ``orjson.loads`` of the change topic;
2. engine: the pure campaign engine in-process (decode + ``handle_change``), no Kafka;
3. the actions app as a subprocess (``python -m streams.actions``: the faust worker
   hosting the transactional loop of ``streams/actions/loop.py``), once per processing
   guarantee: changes/s and actions/s from its first to its last committed offset
   (start-up and state restore excluded). Actions are counted as a ``read_committed``
   consumer reads them (with transactions the offsets also hold commit markers).

Usage: ``python bench/actions.py [--changes 20000] [--guarantee exactly_once
--guarantee at_least_once]``. Needs the broker (``deploy/kafka/kafka.sh start``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import click
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.contracts import decode_change
from streams.actions.engine import Rules, UserState, handle_change
from streams.actions.topics import admin, ensure_topics

T0 = 1_789_084_800_000
DAY = 86_400_000
SEGMENTS = ("price_sensitive", "cart_abandoner", "vip", "churn_risk.high", "service_recovery")


def _changes(n: int, users: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        u = i % users
        seg = SEGMENTS[(i // users + u) % len(SEGMENTS)]
        at = T0 + (i // users) * 8 * DAY + u * 1000
        rec = {"event_id": f"b{i}", "schema_version": 1, "user_id": f"u{u:06d}",
               "segment": seg, "change": "entered", "at": "2026-09-11T00:00:00Z",
               "at_ms": at, "reasons": [{"feature": "spend_365d", "op": ">=",
                                         "value": 1200.0, "threshold": 1000.0}],
               "segments": [seg], "scores": {"churn": 0.4}, "policy_version": "p"}
        out.append((rec["user_id"].encode(), orjson.dumps(rec)))
    return out


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for k, v in records:
        while True:
            try:
                p.produce(topic, key=k, value=v)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


def _raw_consume(bootstrap: str, topic: str, n: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen, start = 0, None
    while seen < n:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            if start is None:
                start = time.perf_counter()
            orjson.loads(m.value())
            seen += 1
    c.close()
    assert start is not None
    return n / (time.perf_counter() - start)


def _engine(records: list[tuple[bytes, bytes]], book: CampaignBook) -> tuple[float, int]:
    rules = Rules(book=book, holdout_seed="bench")
    users: dict[str, UserState] = defaultdict(UserState)
    actions = 0
    start = time.perf_counter()
    for k, v in records:
        ch = decode_change(k, v, 65536)
        actions += len(handle_change(users[ch.user_id], ch, rules, {}).actions)
    return len(records) / (time.perf_counter() - start), actions


def _committed(c: Consumer, tps: list[TopicPartition]) -> int:
    try:
        return sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=10))
    except KafkaException:
        return -1


def _count(bootstrap: str, topic: str, partitions: int) -> int:
    """Committed records of ``topic`` (``read_committed``, to each partition's end)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-count-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    todo, n = set(range(partitions)), 0
    deadline = time.monotonic() + 60
    while todo and time.monotonic() < deadline:
        for m in c.consume(5000, 0.5):
            err = m.error()
            if err is None:
                n += 1
            elif err.code() == KafkaError._PARTITION_EOF:
                todo.discard(m.partition())
    c.close()
    return n


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _app(bootstrap: str, prefix: str, guarantee: str, n: int, partitions: int,
         state: Path) -> tuple[float, int, int]:
    app_id = f"{prefix}-{guarantee}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "SEGSTREAM_ACTIONS_APP_ID": app_id, "SEGSTREAM_ACTIONS_PARTITIONS": str(partitions),
           "SEGSTREAM_ACTIONS_WEB_PORT": str(_free_port()),
           "SEGSTREAM_ACTIONS_STATE_DIR": str(state / guarantee),
           "SEGSTREAM_ACTIONS_API_TOKEN": uuid.uuid4().hex,
           "SEGSTREAM_ACTIONS_GUARANTEE": guarantee, "SEGSTREAM_LOG_LEVEL": "WARNING",
           "SEGSTREAM_TOPIC_CHANGES": f"{prefix}.changes",
           **{f"SEGSTREAM_TOPIC_{r.upper()}": f"{prefix}.{guarantee}.{r}"
              for r in ("churn", "dlq", "coupons", "holdout", "vip_routing", "alerts",
                        "churn_alerts")}}
    log = state / f"{guarantee}.log"
    proc = subprocess.Popen([sys.executable, "-m", "streams.actions"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": app_id,
                  "enable.auto.commit": False})
    tps = [TopicPartition(f"{prefix}.changes", p) for p in range(partitions)]
    first_t, first_n = None, 0
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            done = _committed(c, tps)
            now = time.perf_counter()
            if done > 0 and first_t is None:
                first_t, first_n = now, done
            if done >= n:
                break
            if proc.poll() is not None:
                raise SystemExit(f"app exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        else:
            raise SystemExit(f"app did not finish: {log.read_text()[-2000:]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        c.close()
    assert first_t is not None
    produced = sum(_count(bootstrap, f"{prefix}.{guarantee}.{r}", partitions)
                   for r in ("coupons", "holdout", "vip_routing", "alerts", "churn_alerts"))
    return (n - first_n) / (now - first_t), n - first_n, produced


@click.command()
@click.option("--changes", "n", default=20_000, show_default=True)
@click.option("--users", default=5_000, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--guarantee", "guarantees", multiple=True,
              default=("exactly_once", "at_least_once"), show_default=True)
def main(n: int, users: int, partitions: int, guarantees: tuple[str, ...]) -> None:
    """Print changes/s and actions/s of the app against raw consume and the bare engine."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    prefix = f"bench-actions-{uuid.uuid4().hex[:8]}"
    config = ActionsConfig.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SEGSTREAM_ACTIONS_API_TOKEN": "x" * 16,
        "SEGSTREAM_ACTIONS_PARTITIONS": str(partitions),
        "SEGSTREAM_ACTIONS_APP_ID": f"{prefix}-setup",
        "SEGSTREAM_TOPIC_CHANGES": f"{prefix}.changes",
        **{f"SEGSTREAM_TOPIC_{r.upper()}": f"{prefix}.setup.{r}"
           for r in ("churn", "dlq", "coupons", "holdout", "vip_routing", "alerts",
                     "churn_alerts")}})
    ensure_topics(config, admin(config))
    records = _changes(n, users)
    _produce(bootstrap, f"{prefix}.changes", records)
    book = CampaignBook.load()
    raw = _raw_consume(bootstrap, f"{prefix}.changes", n)
    engine, actions = _engine(records, book)
    print(f"{n} changes, {users} users, {partitions} partitions; the default campaigns give "
          f"{actions} actions without budgets ({actions / n:.2f} per change)")
    print(f"  raw consume + orjson.loads   {raw:10,.0f} changes/s")
    print(f"  engine in-process (no Kafka) {engine:10,.0f} changes/s")
    with tempfile.TemporaryDirectory() as tmp:
        for g in guarantees:
            rate, measured, produced = _app(bootstrap, prefix, g, n, partitions, Path(tmp))
            print(f"  actions app, {g:14s}  {rate:10,.0f} changes/s  "
                  f"{rate * produced / n:8,.0f} actions/s  ({produced} actions, budgets "
                  f"applied; {measured} changes timed; {rate / raw:.1%} of raw)")


if __name__ == "__main__":
    main()
