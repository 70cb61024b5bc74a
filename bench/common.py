"""Shared machinery of the benchmarks: isolated runs, simulated input, the raw limit, and
running the worker in-process or as ``segstream worker`` subprocesses.

Why one module: every figure of the suite is only meaningful next to the raw limit
(a bare ``consume`` + ``orjson.loads``) measured over the *same* topics in the *same*
run, on a machine shared with other jobs. Keeping the isolation (fresh topic names for
every role, own group, own state and model directories), the input generation and the
"done" criterion (the group's committed offsets cover every input) in one place makes
the sections comparable with each other and with earlier runs.

Simulated input: :func:`streams.sim.generator.generate` plans 90 days of persona traffic,
about 116 events per user, of which about 55 (visits, carts, orders, reviews) cannot be
thinned. The issue's sizes (1M events of 100k users, 2M events of 1M users) have far
fewer events per user, so :func:`simulate` *tiles* a natural-volume base population:
each target user gets a contiguous slice of a base user's life (coherent sessions,
orders, reviews), with its own user id and fresh event ids, and the result is sorted by
event time. When the generator can produce the requested mix directly, it is used as is.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.config import Settings, Topics
from streams.exceptions import ConfigError
from streams.kafka.clients import admin
from streams.kafka.topics import create_topics, topic_specs
from streams.sim.generator import generate

REPO = Path(__file__).resolve().parents[1]
ROLES = tuple(f.name for f in dataclasses.fields(Topics))
INPUT_ROLES = frozenset({"clicks", "orders", "reviews", "erase", "enriched"})
TYPE_INDEX = {"click": 0, "order": 1, "review": 2}
DIRECT_MIN_EVENTS_PER_USER = 50
DAY_MS = 86_400_000

# Worker configurations of the suite, as environment variables (streams/config.py and
# models/learn/config.py read them). "rules": features + segment rules only.
CONFIGS: dict[str, dict[str, str]] = {
    "rules": {"SEGSTREAM_MODELS_ENABLED": "false", "SEGSTREAM_TEXT_ANALYZER": "off"},
    "models": {"SEGSTREAM_MODELS_ENABLED": "true", "SEGSTREAM_TEXT_ANALYZER": "off"},
    "text": {"SEGSTREAM_MODELS_ENABLED": "false", "SEGSTREAM_TEXT_ANALYZER": "local"},
    "full": {"SEGSTREAM_MODELS_ENABLED": "true", "SEGSTREAM_TEXT_ANALYZER": "local"},
}
GUARANTEES = ("at_least_once", "exactly_once")


def config_env(config: str, guarantee: str) -> dict[str, str]:
    return {**CONFIGS[config], "SEGSTREAM_PROCESSING_GUARANTEE": guarantee}


def check_config_names() -> None:
    """Fail clearly if the worker's settings no longer accept the variables this suite
    uses to select its configurations (renamed variables would silently bench the
    defaults instead)."""
    for config in CONFIGS:
        for guarantee in GUARANTEES:
            env = config_env(config, guarantee)
            try:
                s = Settings.from_env(env)
            except ConfigError as exc:
                raise SystemExit(f"bench: the worker refuses the configuration {config}/"
                                 f"{guarantee} ({env}):\n{exc}") from None
            got = (s.models.enabled, s.text_analyzer, s.processing_guarantee)
            want = (env["SEGSTREAM_MODELS_ENABLED"] == "true",
                    env["SEGSTREAM_TEXT_ANALYZER"], guarantee)
            if got != want:
                raise SystemExit(f"bench: {env} gave models.enabled, text_analyzer, "
                                 f"processing_guarantee = {got}, expected {want}; "
                                 "streams/config.py changed, update bench/common.py")


# ------------------------------------------------------------------ isolation
class Bench:
    """One benchmark session: a run id, a work directory, and every topic it created
    (deleted again by :meth:`cleanup`)."""

    def __init__(self, partitions: int = 6, overrides: Mapping[str, str] | None = None,
                 keep: bool = False) -> None:
        self.run = f"bench{uuid.uuid4().hex[:6]}"
        self.partitions = partitions
        self.overrides = dict(overrides or {})
        self.keep = keep
        self.work = Path(tempfile.mkdtemp(prefix=f"segstream-{self.run}-"))
        self.used: list[Settings] = []

    def env(self, name: str, inputs: str | None = None, **extra: str) -> dict[str, str]:
        """Settings env of one run: topics ``<run>-<name>.<role>`` (the input roles
        ``<run>-<inputs>.<role>`` when shared), own group, state and model dirs."""
        prefix = f"{self.run}-{name}"
        in_prefix = f"{self.run}-{inputs}" if inputs else prefix
        env = {f"SEGSTREAM_TOPIC_{r.upper()}": f"{in_prefix if r in INPUT_ROLES else prefix}"
               f".{r}" for r in ROLES}
        env.update({
            "SEGSTREAM_GROUP_ID": f"{prefix}-worker",
            "SEGSTREAM_STATE_DIR": str(self.work / name / "state"),
            "SEGSTREAM_MODEL_SNAPSHOT_DIR": str(self.work / name / "models"),
            "SEGSTREAM_PARTITIONS": str(self.partitions),
            "SEGSTREAM_LOG_LEVEL": "WARNING",
            "SEGSTREAM_LOG_JSON": "true",
            "SEGSTREAM_METRICS_PORT": "0",
            **extra,
            **self.overrides,
        })
        return env

    def settings(self, env: Mapping[str, str]) -> Settings:
        """The settings of ``env`` (over the process environment); creates its topics."""
        settings = Settings.from_env({**os.environ, **env})
        create_topics(settings, admin(settings))
        self.used.append(settings)
        return settings

    def dir(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def cleanup(self) -> None:
        if self.keep:
            print(f"kept topics of {self.run} and {self.work}")
            return
        if self.used:
            names = sorted({spec.name for st in self.used for spec in topic_specs(st)})
            client = admin(self.used[0])
            try:
                existing = client.list_topics(timeout=30).topics
                todo = [t for t in names if t in existing]
                if todo:
                    for fut in client.delete_topics(todo, operation_timeout=60).values():
                        fut.result()
            except KafkaException as exc:
                print(f"warning: could not delete the bench topics: {exc}")
        shutil.rmtree(self.work, ignore_errors=True)


# --------------------------------------------------------------- simulation
@dataclass
class Sim:
    """Pre-serialised simulated events in event-time order: ``(type index, key, value)``
    (type index into clicks/orders/reviews)."""

    records: list[tuple[int, bytes, bytes]]
    users: int
    method: str
    seconds: float

    def __len__(self) -> int:
        return len(self.records)

    def describe(self) -> str:
        return (f"{len(self.records):,} events of {self.users:,} users "
                f"({self.method}; built in {self.seconds:.1f}s)")


def _uuid(rng: random.Random) -> str:
    h = f"{(rng.getrandbits(128) & ~((0xF << 76) | (0x3 << 62))) | (0x4 << 76) | (0x2 << 62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _dumps(ev: dict[str, Any]) -> bytes:
    """``orjson.dumps`` into an exactly sized copy: orjson 3.13's result keeps a 4 KiB
    allocation whatever its length (measured with tracemalloc), 2M held events of ~260
    bytes would take 8 GB instead of 0.6 GB."""
    return memoryview(orjson.dumps(ev)).tobytes()


def simulate(users: int, events: int, seed: int = 11, end_ms: int | None = None,
             base_users: int = 1000) -> Sim:
    """``events`` simulated events of ``users`` users (every user has at least one
    event), sorted by event time; see the module docstring for the tiling."""
    started = time.perf_counter()
    if end_ms is None:
        # the last UTC midnight: the same events (and segment changes, whose timers run
        # on a day grid) in every run of a day, and the same relative to the grid on
        # any day
        end_ms = (int(time.time() * 1000) - 60_000) // DAY_MS * DAY_MS
    if events < users:
        raise SystemExit(f"bench: {events} events cannot cover {users} users")
    sim = None
    # Planning is the slow part of the generator (~0.4 ms per user) and it refuses a
    # count below the personas' fixed volume (~55 events per user over 90 days) only
    # after planning everyone: do not even try far below it.
    if events >= DIRECT_MIN_EVENTS_PER_USER * users:
        try:
            sim = generate(users, events, seed=seed, end_ms=end_ms)
        except ValueError:
            sim = None
    if sim is not None:
        records = [(TYPE_INDEX[ev["type"]], ev["user_id"].encode(), _dumps(ev))
                   for ev in sim.events()]
        return Sim(records, users, "generator", time.perf_counter() - started)

    base_n = min(users, base_users)
    base = generate(base_n, None, seed=seed, end_ms=end_ms)
    lives: list[list[dict[str, Any]]] = [[] for _ in range(base_n)]
    for ev in base.events():
        lives[int(ev["user_id"][1:])].append(ev)
    per, extra = divmod(events, users)
    need = per + (1 if extra else 0)
    eligible = [i for i, life in enumerate(lives) if len(life) >= need] or \
        [i for i, life in enumerate(lives) if life]
    order: list[tuple[int, int, int, int]] = []  # (ts, user, base user, index in life)
    for j in range(users):
        b = eligible[j % len(eligible)]
        copy = j // len(eligible)
        life = lives[b]
        k = min(per + (1 if j < extra else 0), len(life))
        span = len(life) - k + 1
        start = (copy * 7919 + j) % span
        order.extend((life[i]["ts"], j, b, i) for i in range(start, start + k))
    order.sort()
    rng = random.Random(f"{seed}:bench-ids")
    width = max(6, len(str(users - 1)))
    records = []
    for _, j, b, i in order:
        ev = dict(lives[b][i])
        uid = f"u{j:0{width}d}"
        ev["user_id"] = uid
        ev["event_id"] = _uuid(rng)
        records.append((TYPE_INDEX[ev["type"]], uid.encode(), _dumps(ev)))
    method = (f"tiled from {base_n:,} natural-volume users of the generator, "
              f"~{events / users:.1f} events/user")
    return Sim(records, users, method, time.perf_counter() - started)


def write_jsonl(sim: Sim, path: Path) -> None:
    with path.open("wb") as fh:
        for _, _, value in sim.records:
            fh.write(value + b"\n")


# ----------------------------------------------------------------- producing
def _producer(settings: Settings, **extra: Any) -> Producer:
    return Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 20,
                     "enable.idempotence": True, "compression.type": "lz4",
                     "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
                     **extra})


def _produce_records(p: Producer, settings: Settings,
                     records: Iterable[tuple[int, bytes, bytes]]) -> int:
    """Produce ``(topic role, key, value)`` records, waiting out a full local queue."""
    topics = settings.topics.inputs
    n = 0
    for role, key, value in records:
        while True:
            try:
                p.produce(topics[role], key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if not n % 20_000:
            p.poll(0)
    return n


def produce_all(settings: Settings, records: Iterable[tuple[int, bytes, bytes]]) -> tuple[int,
                                                                                          float]:
    """Produce every record as fast as possible; return (count, seconds)."""
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    p = _producer(settings, on_delivery=on_delivery)
    t = time.perf_counter()
    n = _produce_records(p, settings, records)
    remaining = p.flush(300)
    if remaining or errors:
        raise SystemExit(f"bench: producing failed: {remaining} unacknowledged, "
                         f"errors {errors[:5]}")
    return n, time.perf_counter() - t


def produce_atomic(settings: Settings, records: Iterable[tuple[int, bytes, bytes]]) -> tuple[
        int, float]:
    """Produce every record in one Kafka transaction: ``read_committed`` workers that are
    already running see the whole input at once, when it commits. Returns (count,
    wall clock of the commit as ``time.perf_counter()``)."""
    p = _producer(settings, **{"transactional.id": f"bench-backfill-{uuid.uuid4().hex}",
                               "transaction.timeout.ms": 600_000})
    p.init_transactions(60)
    p.begin_transaction()
    n = _produce_records(p, settings, records)
    p.commit_transaction(600)
    return n, time.perf_counter()


def group_assignment(settings: Settings) -> list[set[tuple[str, int]]]:
    """The group's members' assigned topic-partitions (empty list: no group yet)."""
    client = admin(settings)
    try:
        desc = client.describe_consumer_groups([settings.group_id],
                                               request_timeout=10)[settings.group_id].result()
    except KafkaException:
        return []
    out = []
    for m in desc.members:
        tps = m.assignment.topic_partitions if m.assignment is not None else []
        out.append({(tp.topic, tp.partition) for tp in tps})
    return out


def wait_group_stable(settings: Settings, workers: int, procs: Sequence[WorkerProc],
                      timeout: float = 120) -> float:
    """Wait until ``workers`` members share every input partition; return seconds."""
    want = {(t, p) for t in settings.topics.inputs for p in range(settings.partitions)}
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check()
        members = group_assignment(settings)
        got: set[tuple[str, int]] = set().union(*members) if members else set()
        if len(members) == workers and want <= got and all(m & want for m in members):
            return time.perf_counter() - t0
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: group {settings.group_id} not stable with {workers} "
                             f"members in {timeout}s: {members}")
        time.sleep(0.2)


class RateProducer:
    """Produces at a fixed offered load and records each input's broker append time
    (the input topics are LogAppendTime, so the delivery report carries it)."""

    def __init__(self, settings: Settings) -> None:
        self.topics = settings.topics.inputs
        self.append_ms: dict[tuple[str, int, int], int] = {}
        self.errors: list[str] = []
        self.ts_types: set[int] = set()
        self.p = _producer(settings, **{"linger.ms": 5, "on_delivery": self._on_delivery})

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(err.str())
            return
        kind, ts = msg.timestamp()
        self.ts_types.add(kind)
        self.append_ms[(msg.topic(), msg.partition(), msg.offset())] = ts

    def run(self, records: Sequence[tuple[int, bytes, bytes]], rate: float,
            seconds: float) -> tuple[int, float]:
        """Offer ``rate`` events/s for ``seconds`` (or until ``records`` run out);
        return (produced, elapsed seconds)."""
        total = min(len(records), int(rate * seconds))
        n = 0
        t0 = time.perf_counter()
        while n < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while n < due:
                role, key, value = records[n]
                try:
                    self.p.produce(self.topics[role], key=key, value=value)
                except BufferError:
                    self.p.poll(0.01)
                    continue
                n += 1
            self.p.poll(0)
            time.sleep(0.002)
        elapsed = time.perf_counter() - t0
        self.p.flush(60)
        return n, elapsed

    def flush(self) -> None:
        self.p.flush(60)


# ------------------------------------------------------------------ raw limit
def raw_limit(settings: Settings, n: int, group: str, timeout: float = 600) -> dict[str, Any]:
    """A bare confluent-kafka consumer, ``consume(1000)`` + ``orjson.loads`` of every
    value over the input topics: what any Python consumer of these topics pays."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    # assign(), not subscribe(): a group join (and its rebalance timing) is no part of
    # the decode cost, and the worker's join is not timed either
    c.assign([TopicPartition(t, p, 0) for t in settings.topics.inputs
              for p in range(settings.partitions)])
    seen, first = 0, 0.0
    deadline = time.monotonic() + timeout
    while seen < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: raw consumer read {seen} of {n} within {timeout}s")
        # never ask for more than is left: consume() waits for a full batch or the
        # timeout, and a partial last batch would time the wait, not the decoding
        msgs = c.consume(min(1000, n - seen), 1.0)
        if msgs and not first:
            first = time.perf_counter()
        for m in msgs:
            value = m.value()
            if m.error() is None and value is not None:
                orjson.loads(value)
                seen += 1
    elapsed = time.perf_counter() - first
    c.close()
    return {"events": seen, "seconds": round(elapsed, 3), "events_per_s": seen / elapsed,
            "us_per_event": elapsed / seen * 1e6}


# ------------------------------------------------------------------ progress
class GroupProgress:
    """The group's committed offsets summed over the input topics (one long-lived
    client, so it can be polled often). read_uncommitted: a read_committed probe gets
    UNSTABLE_OFFSET_COMMIT while a transaction holds offsets."""

    def __init__(self, settings: Settings) -> None:
        self._c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                            "group.id": settings.group_id, "enable.auto.commit": False,
                            "isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(t, p) for t in settings.topics.inputs
                     for p in range(settings.partitions)]

    def total(self) -> int:
        try:
            return sum(max(tp.offset, 0) for tp in self._c.committed(self._tps, timeout=10))
        except KafkaException:
            return -1

    def close(self) -> None:
        self._c.close()


def registry_total(registry: Any, name: str) -> float:
    return sum(s.value for m in registry.collect() if m.name == name
               for s in m.samples if s.name.endswith("_total"))


# ------------------------------------------------------------------ in-process
def worker_thread(w: Any) -> tuple[threading.Thread, list[BaseException]]:
    """A daemon thread (not started) running ``w.run()``, and the list its exception
    lands in: the caller reports it, so a failed worker cannot hang the bench."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            w.run()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    return threading.Thread(target=target, name="bench-worker", daemon=True), errors


def run_inprocess(settings: Settings, n: int, timeout: float = 1800) -> dict[str, Any]:
    """The worker (the production code path, :func:`build_worker`) in a thread of this
    process, over ``n`` inputs already in its topics. Timed from its first processed
    batch until the group's committed offsets cover all ``n`` (so group join and
    restore are not counted; they are reported as ``join_s``)."""
    from prometheus_client import CollectorRegistry

    from streams.runtime.app import build_worker

    w = build_worker(settings, CollectorRegistry())
    th, errors = worker_thread(w)
    probe = GroupProgress(settings)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    th.start()

    def check() -> None:
        if errors or not th.is_alive():
            raise SystemExit(f"bench: worker stopped: {errors[:1]!r}")
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: worker processed {w.processed} of {n} in {timeout}s")

    try:
        while w.batches == 0:
            check()
            time.sleep(0.005)
        joined = time.perf_counter()
        while w.processed < n:
            check()
            time.sleep(0.01)
        processed_at = time.perf_counter()
        while probe.total() < n:
            check()
            time.sleep(0.02)
        done = time.perf_counter()
    finally:
        w.stop()
        th.join(120)
        probe.close()
    reg = w.metrics.registry
    secs = done - joined
    return {"events": w.processed, "seconds": round(secs, 3), "events_per_s": n / secs,
            "us_per_event": secs / n * 1e6, "join_s": round(joined - started, 3),
            "commit_tail_s": round(done - processed_at, 3),
            "segment_changes": int(registry_total(reg, "segstream_segment_changes")),
            "dead_letters": int(registry_total(reg, "segstream_dlq")),
            "duplicates": w.duplicates, "batches": w.batches}


# ---------------------------------------------------------------- subprocesses
def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (peak RSS) in bytes from /proc (Linux)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


@dataclass
class WorkerProc:
    """A ``segstream worker`` subprocess (the production command)."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)
    peak_rss: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO,
                env={**os.environ, **self.env, "SEGSTREAM_LOG_LEVEL": "INFO"},
                stdout=fh, stderr=subprocess.STDOUT)

    def sample(self, t: float) -> None:
        st = _proc_status(self.proc.pid)
        if "VmHWM" in st:
            self.peak_rss = max(self.peak_rss, st["VmHWM"])
        if "VmRSS" in st:
            self.rss_samples.append((round(t, 2), st["VmRSS"]))

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"bench: worker exited with {self.proc.returncode}:\n"
                             f"{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, timeout: float = 180) -> None:
        if self.proc.poll() is None:
            self.sample(0)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                raise SystemExit(f"bench: worker {self.proc.pid} did not stop in "
                                 f"{timeout}s; killed") from None
        if self.proc.returncode not in (0, -signal.SIGTERM):
            raise SystemExit(f"bench: worker exited with {self.proc.returncode}:\n"
                             f"{self.log.read_text(errors='replace')[-3000:]}")


def run_subprocesses(env: Mapping[str, str], settings: Settings, n: int, workers: int,
                     log_dir: Path, timeout: float = 3600,
                     backfill: Sequence[tuple[int, bytes, bytes]] | None = None
                     ) -> dict[str, Any]:
    """``workers`` worker processes of one group over ``n`` inputs; timed on the group's
    committed offsets from the first commit until all ``n`` are committed (process
    start-up and group join are reported separately as ``startup_s``).

    Without ``backfill`` the inputs are already in the topics (the first member starts
    on them before a second one joins). With ``backfill`` (input topics empty), the
    workers start first, the group is waited for until every member holds its
    partitions, and the records are then produced in one transaction: the timing starts
    at its commit, with the final assignment in place (``startup_s`` then is the wait
    for a stable group)."""
    probe = GroupProgress(settings)
    procs = [WorkerProc(dict(env), log_dir / f"worker{i}.log") for i in range(workers)]
    started = time.perf_counter()
    first_t, first_n, last_sample = 0.0, 0, 0.0
    if backfill is not None:
        try:
            stable_s = wait_group_stable(settings, workers, procs)
        except BaseException:
            for p in procs:
                p.proc.kill()
            probe.close()
            raise
        n, first_t = produce_atomic(settings, backfill)
        started = first_t - stable_s
    deadline = time.monotonic() + timeout
    trace: list[tuple[float, int]] = []  # (seconds since start, committed)
    try:
        while True:
            for p in procs:
                p.check()
            now = time.perf_counter()
            if now - last_sample >= 0.5:
                last_sample = now
                for p in procs:
                    p.sample(now - started)
            done = probe.total()
            now = time.perf_counter()
            if done > 0 and not first_t:
                first_t, first_n = now, done
            if backfill is not None and not trace:
                trace.append((first_t - started, 0))
            if done > 0 and (not trace or trace[-1][1] != done):
                trace.append((now - started, done))
            if done >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {done} of {n} committed after {timeout}s")
            time.sleep(0.02)
        for p in procs:
            p.sample(now - started)
    finally:
        for p in procs:
            try:
                p.stop()
            finally:
                if p.proc.poll() is None:
                    p.proc.kill()
        probe.close()
    secs = now - first_t
    rate = (n - first_n) / secs if secs > 0 else float("nan")
    return {"events": n, "workers": workers, "seconds": round(secs, 3), "events_per_s": rate,
            "us_per_event": 1e6 / rate if rate else float("nan"),
            "steady_events_per_s": steady_rate(trace, n),
            "startup_s": round(first_t - started, 3), "first_commit_events": first_n,
            "peak_rss_bytes": [p.peak_rss for p in procs],
            "rss_timeline": [thin(p.rss_samples, 120) for p in procs]}


def steady_rate(trace: Sequence[tuple[float, int]], n: int, lo: float = 0.1,
                hi: float = 0.9) -> float:
    """Events/s between the commits crossing ``lo`` and ``hi`` of ``n``: leaves out a
    start (group join, a second member's rebalance) and a tail of a single commit."""
    a = next((p for p in trace if p[1] >= lo * n), None)
    b = next((p for p in trace if p[1] >= hi * n), None)
    if a is None or b is None or b[0] <= a[0]:
        return float("nan")
    return (b[1] - a[1]) / (b[0] - a[0])


def thin(samples: Sequence[Any], keep: int) -> list[Any]:
    if len(samples) <= keep:
        return list(samples)
    step = len(samples) / keep
    return [samples[int(i * step)] for i in range(keep)] + [samples[-1]]


# ------------------------------------------------------------------- reading
def read_topic(settings: Settings, topic: str, timeout: float = 60) -> list[Any]:
    """Every committed message of ``topic`` up to its current end (read_committed)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"bench-reader-{time.time_ns()}", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    todo = {p for p, end in ends.items() if end > 0}
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        for m in c.consume(1000, 0.2):
            if m.error():
                pos = c.position([TopicPartition(topic, m.partition())])[0].offset
                if pos >= ends[m.partition()] or m.error().code() != KafkaError._PARTITION_EOF:
                    todo.discard(m.partition())
                continue
            out.append(m)
    c.close()
    return out


# ---------------------------------------------------------------------- misc
def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _first(v: Any) -> str:
    """``version()``/``libversion()`` give a string or a (string, int) tuple by release."""
    return str(v[0] if isinstance(v, tuple) else v)


def machine_info() -> dict[str, Any]:
    import confluent_kafka

    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
            "mem_total_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform(),
            "confluent_kafka": _first(confluent_kafka.version()),
            "librdkafka": _first(confluent_kafka.libversion()),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]
