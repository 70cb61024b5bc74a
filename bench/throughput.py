"""Worker throughput over the real broker, against raw consume throughput in the same run.

1. Simulate N events (default 200k for 2000 users) and produce them to fresh topics.
2. Baseline: a bare confluent-kafka consumer, ``consume(1000)`` + ``orjson.loads`` of
   every value, reading all N events (what any Python consumer must pay).
3. The segstream worker (the production code path, in-process) over the same topics with
   its own group and state: decode, validate, features, segment rules, outputs, stores
   and commits. Measured from the first consumed batch until all N are committed, so the
   group join is not counted (it is printed separately).

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/throughput.py [--events N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from streams import logs
from streams.config import Settings, Topics
from streams.kafka.clients import admin
from streams.kafka.topics import create_topics
from streams.runtime.app import build_worker
from streams.sim.generator import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()

    run = f"bench{uuid.uuid4().hex[:6]}"
    state = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    env = {f"SEGSTREAM_TOPIC_{f.name.upper()}": f"{run}.{f.name}"
           for f in dataclasses.fields(Topics)}
    env.update({"SEGSTREAM_GROUP_ID": f"{run}-worker", "SEGSTREAM_STATE_DIR": str(state),
                "SEGSTREAM_PARTITIONS": str(args.partitions), "SEGSTREAM_LOG_LEVEL": "WARNING"})
    settings = Settings.from_env({**os.environ, **env})
    logs.configure(settings.log_level, settings.log_json)
    create_topics(settings, admin(settings))

    # 1. produce
    sim = generate(args.users, args.events, seed=11, end_ms=int(time.time() * 1000), days=90)
    topic = {"click": settings.topics.clicks, "order": settings.topics.orders,
             "review": settings.topics.reviews}
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20,
                  "enable.idempotence": True, "compression.type": "lz4"})
    n = 0
    t = time.perf_counter()
    for ev in sim.events():
        while True:
            try:
                p.produce(topic[ev["type"]], key=ev["user_id"].encode(), value=orjson.dumps(ev))
                break
            except BufferError:
                p.poll(0.05)
        n += 1
    p.flush(120)
    produce_s = time.perf_counter() - t
    print(f"produced {n} events for {args.users} users in {produce_s:.1f}s "
          f"({n / produce_s:,.0f}/s)")

    # 2. baseline: raw consume + decode
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"{run}-raw", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(list(settings.topics.inputs))
    seen = 0
    first = None
    while seen < n:
        msgs = c.consume(1000, 1.0)
        if msgs and first is None:
            first = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                orjson.loads(m.value())
                seen += 1
    raw_s = time.perf_counter() - first
    c.close()
    print(f"baseline raw consume+decode: {seen} in {raw_s:.2f}s = {seen / raw_s:,.0f} events/s")

    # 3. the worker
    w = build_worker(settings, CollectorRegistry())
    th = threading.Thread(target=w.run, daemon=True)
    started = time.perf_counter()
    th.start()
    while w.batches == 0:
        time.sleep(0.01)
    joined = time.perf_counter()
    while w.processed < n:
        time.sleep(0.01)
    done = time.perf_counter()
    w.stop()
    th.join(60)
    work_s = done - joined
    reg = w.metrics.registry
    changes = sum(s.value for m in reg.collect() if m.name == "segstream_segment_changes"
                  for s in m.samples if s.name.endswith("_total"))
    dlq = sum(s.value for m in reg.collect() if m.name == "segstream_dlq"
              for s in m.samples if s.name.endswith("_total"))
    print(f"group join + restore: {joined - started:.2f}s")
    print(f"segstream worker: {w.processed} in {work_s:.2f}s = {w.processed / work_s:,.0f} "
          f"events/s ({work_s / w.processed * 1e6:.1f} us/event), {changes:.0f} segment "
          f"changes, {dlq:.0f} dead letters, {w.batches} batches")
    print(f"worker / raw consume: {(w.processed / work_s) / (seen / raw_s):.1%}")
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
