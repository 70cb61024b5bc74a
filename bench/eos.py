"""Exactly-once against at-least-once: the same input through the worker in each mode,
against a raw consume + decode baseline measured in the same run.

1. Simulate N events (default 200k for 2000 users) and produce them once to fresh input
   topics.
2. Baseline: a bare confluent-kafka consumer, ``consume(1000)`` + ``orjson.loads`` of
   every value, over all N.
3. ``segstream worker`` (the production command, a subprocess) over the same input
   topics, once with ``SEGSTREAM_PROCESSING_GUARANTEE=exactly_once`` and once with
   ``at_least_once``, each with its own group, state and output topics. Throughput is
   measured on the group's committed offsets, from the first commit to the last, so
   process start-up and group join are not counted (printed separately).

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/eos.py [--events N] [--repeat R]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.config import Settings, Topics
from streams.kafka.clients import admin
from streams.kafka.topics import create_topics, topic_specs
from streams.sim.generator import generate

ROLES = tuple(f.name for f in dataclasses.fields(Topics))
INPUT_ROLES = frozenset({"clicks", "orders", "reviews", "erase", "enriched"})
MODES = ("exactly_once", "at_least_once")


def run_env(run: str, state: Path, partitions: int, inputs: str | None = None,
            **extra: str) -> dict[str, str]:
    """Settings env of one run: topics named ``<run>.<role>`` (inputs ``<inputs>.<role>``),
    its own group and state directory."""
    env = {f"SEGSTREAM_TOPIC_{r.upper()}": f"{inputs or run}.{r}" if r in INPUT_ROLES
           else f"{run}.{r}" for r in ROLES}
    env.update({"SEGSTREAM_GROUP_ID": f"{run}-worker", "SEGSTREAM_STATE_DIR": str(state),
                "SEGSTREAM_PARTITIONS": str(partitions), "SEGSTREAM_LOG_LEVEL": "INFO",
                "SEGSTREAM_LOG_JSON": "true", **extra})
    return env


def settings_of(env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env({**os.environ, **env})
    create_topics(settings, admin(settings))
    return settings


def produce_simulation(settings: Settings, users: int, events: int, seed: int,
                       per_user: int | None = None, days: int = 90) -> tuple[int, int]:
    """Produce simulated events keyed by user id; ``per_user`` keeps only each user's
    first events (many users, few events each). Returns (events, users) produced."""
    sim = generate(users, None if per_user else events, seed=seed,
                   end_ms=int(time.time() * 1000) - 60_000, days=days)
    t = settings.topics
    topic = {"click": t.clicks, "order": t.orders, "review": t.reviews}
    p = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20,
                  "enable.idempotence": True, "compression.type": "lz4"})
    seen: dict[str, int] = {}
    n = 0
    for ev in sim.events():
        if per_user is not None:
            k = seen.get(ev["user_id"], 0)
            if k >= per_user:
                continue
            seen[ev["user_id"]] = k + 1
        while True:
            try:
                p.produce(topic[ev["type"]], key=ev["user_id"].encode(), value=orjson.dumps(ev))
                break
            except BufferError:
                p.poll(0.05)
        n += 1
    assert p.flush(120) == 0, "events not acknowledged"
    return n, len(seen) if per_user is not None else users


def raw_baseline(settings: Settings, n: int, group: str) -> float:
    """Events/s of a bare consume + orjson.loads over the input topics (the suite's
    measurement, bench/common.py: no group join, no wait for a partial last batch)."""
    from common import raw_limit

    return float(raw_limit(settings, n, group)["events_per_s"])


class Committed:
    """The group's committed input offsets, summed (one long-lived client)."""

    def __init__(self, settings: Settings) -> None:
        self._c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                            "group.id": settings.group_id, "enable.auto.commit": False})
        self._tps = [TopicPartition(t, p) for t in settings.topics.inputs
                     for p in range(settings.partitions)]

    def total(self) -> int:
        return sum(max(tp.offset, 0) for tp in self._c.committed(self._tps, timeout=10))

    def close(self) -> None:
        self._c.close()


def start_worker(env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    if proc.wait(120) != 0:
        raise SystemExit(f"worker exited with {proc.returncode}:\n"
                         f"{log.read_text(errors='replace')[-3000:]}")


def timed_worker_run(env: Mapping[str, str], settings: Settings, n: int, log: Path
                     ) -> tuple[float, float]:
    """Run the worker until all ``n`` inputs are committed; return (events/s from the
    first commit to the last, seconds from process start to the first commit)."""
    probe = Committed(settings)
    proc = start_worker(env, log)
    started = time.perf_counter()
    first_t, first_n = 0.0, 0
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
            done = probe.total()
            now = time.perf_counter()
            if done > 0 and not first_t:
                first_t, first_n = now, done
            if done >= n:
                break
            time.sleep(0.02)
        rate = (n - first_n) / (now - first_t) if now > first_t else float("nan")
        stop_worker(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        probe.close()
    return rate, first_t - started


def drop_topics(used: list[Settings]) -> None:
    """Delete every topic the runs created (shared inputs once)."""
    names = sorted({spec.name for st in used for spec in topic_specs(st)})
    client = admin(used[0])
    existing = client.list_topics(timeout=30).topics
    for fut in client.delete_topics([t for t in names if t in existing],
                                    operation_timeout=30).values():
        fut.result()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode, alternating")
    args = ap.parse_args()

    run = f"eos{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="segstream-eos-"))
    inputs_env = run_env(run, work / "unused", args.partitions)
    inputs = settings_of(inputs_env)
    supported = hasattr(inputs, "processing_guarantee")
    n, _ = produce_simulation(inputs, args.users, args.events, seed=11)
    print(f"produced {n} events for {args.users} users, {args.partitions} partitions")
    if not supported:
        print("note: this checkout has no SEGSTREAM_PROCESSING_GUARANTEE; both modes run "
              "the same (at-least-once) code")

    raw = raw_baseline(inputs, n, f"{run}-raw")
    print(f"baseline raw consume+decode: {raw:,.0f} events/s")
    used: list[Settings] = [inputs]
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    try:
        for i in range(args.repeat):
            for mode in MODES:
                name = f"{run}-{mode.replace('_', '')}{i}"
                env = run_env(name, work / name, args.partitions, inputs=run,
                              SEGSTREAM_PROCESSING_GUARANTEE=mode)
                settings = settings_of(env)
                used.append(settings)
                rate, startup = timed_worker_run(env, settings, n, work / f"{name}.log")
                rates[mode].append(rate)
                print(f"worker {mode}: {rate:,.0f} events/s ({rate / raw:.1%} of raw), "
                      f"start-up to first commit {startup:.1f}s")
    finally:
        drop_topics(used)
        shutil.rmtree(work, ignore_errors=True)
    best = {m: max(r) for m, r in rates.items()}
    print(f"exactly_once / at_least_once: {best['exactly_once'] / best['at_least_once']:.1%} "
          f"(best of {args.repeat}: {best['exactly_once']:,.0f} vs "
          f"{best['at_least_once']:,.0f} events/s; raw {raw:,.0f})")


if __name__ == "__main__":
    main()
