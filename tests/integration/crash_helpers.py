"""Harness for the crash, failover and broker-restart tests.

Why a harness of its own: those tests judge the worker's delivery guarantees from the
outside, as a downstream consumer would, so everything here treats the worker as a black
box: it runs ``segstream worker`` in subprocesses (logs to files under the test's
``tmp_path``), kills them with SIGKILL, follows progress through the consumer group's
committed offsets, reads the outputs with a ``read_committed`` consumer only once no
transaction is open on them, and compares them record by record with a reference.

The reference is an *uninterrupted* worker run over the very same input topics with its
own consumer group, state directory, changelog and output topics
(:func:`reference_settings`, :func:`run_to_completion`). Output ids derive from the input
topic, partition and offset, so sharing the inputs makes the ids of both runs equal by
construction; the comparison is then plain: per ``event_id`` the same full payload,
nothing missing, nothing twice (:func:`compare_runs`). The reference itself is checked
against the in-process replay (:func:`replay_agrees`).

Examples
--------
>>> c = compare("changes", [("a", 1), ("b", 2), ("b", 2), ("x", 9)], {"a": 1, "b": 3, "c": 4})
>>> c.missing, c.duplicated, c.unexpected, c.differing, c.ok
(['c'], {'b': 1}, ['x'], ['b'], False)
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.config import Settings, Topics
from streams.kafka.clients import admin
from streams.kafka.dlq import parse_headers
from streams.kafka.topics import create_topics
from streams.sim.generator import generate

from .kafka_helpers import env_of, isolated_settings, produce

# Every topic role the checkout knows; roles added later (changelog, erase, alerts, ...)
# are isolated per test as well, because the role list is read from the dataclass.
ROLES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Topics))
# Roles the worker reads: an uninterrupted reference run shares them with the run under
# test. Every other role (outputs, the state changelog) is private to each run.
INPUT_ROLES = frozenset({"clicks", "orders", "reviews", "erase", "enriched"})

SESSION_TIMEOUT_MS = 6_000


# ------------------------------------------------------------------------ settings
def topic_env(prefix: str) -> dict[str, str]:
    """``SEGSTREAM_TOPIC_<ROLE>`` for every role, named ``<prefix>.<role>``."""
    return {f"SEGSTREAM_TOPIC_{r.upper()}": f"{prefix}.{r}" for r in ROLES}


def crash_settings(bootstrap: str, test_id: str, state_dir: Path, **env: str) -> Settings:
    """Isolated settings for a crash test (every topic role private, 3 partitions, short
    session timeout), with the topics created."""
    return isolated_settings(bootstrap, test_id, state_dir,
                             **{**topic_env(test_id),
                                "SEGSTREAM_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
                                **env})


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The full environment of a ``segstream worker`` subprocess using ``settings``."""
    return {**os.environ, **env_of(settings), "SEGSTREAM_LOG_LEVEL": "INFO",
            "SEGSTREAM_LOG_JSON": "true", **extra}


def guarantee_of(settings: Settings) -> str:
    """The processing guarantee in force, or a note that the checkout has no setting."""
    return str(getattr(settings, "processing_guarantee", "unset (no setting in checkout)"))


def reference_settings(settings: Settings, state_dir: Path) -> Settings:
    """Same inputs, its own group, state and outputs: the uninterrupted reference run."""
    topics = dataclasses.replace(settings.topics, **{
        r: f"{getattr(settings.topics, r)}.ref" for r in ROLES if r not in INPUT_ROLES})
    ref = dataclasses.replace(settings, topics=topics, group_id=f"{settings.group_id}-ref",
                              group_instance_id="", state_dir=state_dir)
    create_topics(ref, admin(ref))
    return ref


# ------------------------------------------------------------------------ input data
@dataclass(frozen=True)
class Produced:
    """What was put on the input topics."""

    records: int
    events: list[dict[str, Any]]
    bad_positions: frozenset[tuple[str, int, int]]  # (topic, partition, offset) of bad ones
    per_partition: dict[int, int]  # records per partition number, over the input topics


def simulated_events(users: int, events: int, seed: int) -> list[dict[str, Any]]:
    """Deterministic shop traffic over the 90 days before now (see ``generate``)."""
    sim = generate(users, events, seed=seed, end_ms=int(time.time() * 1000) - 60_000, days=90)
    return list(sim.events())


def malformed_records(settings: Settings, events: list[dict[str, Any]]
                      ) -> list[tuple[str, bytes, bytes]]:
    """A handful of invalid messages, keyed by real users (so they land amid real data),
    one per dead-letter reason that needs no wall clock to decide."""
    t = settings.topics
    order = next(e for e in events if e["type"] == "order")
    click = next(e for e in events if e["type"] == "click")
    uo, uc = order["user_id"].encode(), click["user_id"].encode()
    return [
        (t.orders, uo, b'{"event_id": "broken", "user_id": '),
        (t.orders, uo, orjson.dumps({**order, "event_id": "bad-total", "total": "ten"})),
        (t.clicks, uc, orjson.dumps({k: v for k, v in click.items() if k != "session_id"}
                                    | {"event_id": "bad-session"})),
        (t.clicks, uc, orjson.dumps({**click, "event_id": "bad-action", "action": "teleport"})),
        (t.clicks, uc, b"[1, 2, 3]"),
        (t.orders, b"nobody", orjson.dumps({**order, "event_id": "bad-key"})),
    ]


def produce_inputs(settings: Settings, events: list[dict[str, Any]], seed: int,
                   atomic: bool = False) -> Produced:
    """Produce ``events`` keyed by user id, with :func:`malformed_records` mixed in at
    seeded random places; return where the bad ones landed."""
    t = settings.topics
    topic = {"click": t.clicks, "order": t.orders, "review": t.reviews}
    records = [(topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in events]
    rng = random.Random(f"{seed}:malformed")
    bad_at: set[int] = set()
    for bad in malformed_records(settings, events):
        i = rng.randrange(len(records) + 1)
        records.insert(i, bad)
        bad_at = {j + 1 if j >= i else j for j in bad_at} | {i}
    positions = produce(settings, records, atomic=atomic)
    per_partition = Counter(part for _, part, _ in positions)
    return Produced(len(records), events, frozenset(positions[i] for i in bad_at),
                    dict(per_partition))


def write_jsonl(events: Iterable[dict[str, Any]], path: Path) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


# ------------------------------------------------------------------------ workers
class WorkerProcess:
    """One ``segstream worker`` subprocess; every (re)start appends to the same log."""

    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.settings = settings
        self.log = log
        self.env = worker_env(settings, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._mark = 0  # log size when the current process started

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as fh:
            fh.write(f"# start {self.starts} at {time.time():.3f}\n".encode())
            fh.flush()
            self._mark = fh.tell()
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                         env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no leave-group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def wait_logged(self, msg: str, timeout: float = 60) -> None:
        """Until the current process logged a line with this ``msg``."""
        needle = f'"msg":"{msg}"'.encode()

        def logged() -> bool:
            with self.log.open("rb") as fh:
                fh.seek(self._mark)
                return needle in fh.read()
        wait_for(logged, timeout, f"the worker to log {msg!r}", [self], interval=0.05)

    def wait_started(self, timeout: float = 60) -> None:
        """Until this start logged ``worker started`` (its signal handlers are in place)."""
        self.wait_logged("worker started", timeout)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (once the worker handles it) and wait; return the exit code."""
        assert self.proc is not None
        self.wait_started()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker ignored SIGTERM for {timeout}s\n{self.tail()}"
                                 ) from None

    def ensure_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_bytes().splitlines():
            if line.startswith(b"{"):
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a line cut by SIGKILL
        return out

    def owned(self) -> set[int]:
        """The partitions this worker holds by its own log: the ``partitions`` of its last
        ``partitions assigned`` / ``partitions revoked`` line (both carry the whole set
        held after the change)."""
        held: set[int] = set()
        for r in self.records():
            if r.get("msg") in {"partitions assigned", "partitions revoked"}:
                held = set(r.get("partitions", ()))
        return held


def wait_for(pred: Callable[[], bool], timeout: float, what: str,
             workers: Iterable[WorkerProcess] = (), interval: float = 0.02) -> None:
    """Poll ``pred``; fail at once, with the log, when a worker died on its own."""
    watched = list(workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        for w in watched:
            w.ensure_alive()
        time.sleep(interval)
    tails = "\n".join(w.tail(2500) for w in watched)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


class Progress:
    """The group's committed input offsets, summed, polled often through one client.

    Asked with ``read_uncommitted``, so the broker answers with the offsets committed so
    far at once: a ``read_committed`` client (librdkafka's default) asks for *stable*
    offsets, which the broker refuses (UNSTABLE_OFFSET_COMMIT) while a transaction that
    carries offsets is open, which for an exactly-once worker is nearly always.
    """

    def __init__(self, settings: Settings) -> None:
        self._consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                                   "group.id": settings.group_id, "enable.auto.commit": False,
                                   "isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(t, p) for t in settings.topics.inputs
                     for p in range(settings.partitions)]

    def by_partition(self) -> dict[int, int]:
        """Committed offsets per partition number, summed over the input topics."""
        out: dict[int, int] = {}
        for tp in self._consumer.committed(self._tps, timeout=10):
            out[tp.partition] = out.get(tp.partition, 0) + max(tp.offset, 0)
        return out

    def total(self) -> int:
        """The sum, or -1 while the coordinator cannot answer (loading, moving)."""
        try:
            return sum(self.by_partition().values())
        except KafkaException:
            return -1

    def close(self) -> None:
        self._consumer.close()


def committed_by_partition(settings: Settings) -> dict[int, int]:
    """The group's committed offsets per partition number (one-off)."""
    probe = Progress(settings)
    try:
        return probe.by_partition()
    finally:
        probe.close()


def committed_now(progress: Progress, timeout: float = 60) -> int:
    """The group's committed total, retried while the coordinator cannot answer."""
    deadline = time.monotonic() + timeout
    while (n := progress.total()) < 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no committed offsets from the coordinator in {timeout}s")
        time.sleep(0.1)
    return n


def run_to_completion(settings: Settings, total: int, log: Path, timeout: float = 150,
                      **env: str) -> float:
    """Start one worker, wait until the group committed all ``total`` input records,
    stop it with SIGTERM; return the wall time."""
    progress = Progress(settings)
    w = WorkerProcess(settings, log, **env).start()
    started = time.monotonic()
    try:
        wait_for(lambda: progress.total() >= total, timeout, "all input committed", [w])
        elapsed = time.monotonic() - started
        assert w.stop() == 0, w.tail()
    finally:
        if w.running:
            w.kill()
        progress.close()
    return elapsed


# ------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: dict[str, str]

    def json(self) -> Any:
        return None if self.value is None else orjson.loads(self.value)


def _offsets(client: AdminClient, tps: list[TopicPartition], level: IsolationLevel
             ) -> dict[int, int]:
    futures = client.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                  isolation_level=level, request_timeout=15)
    return {tp.partition: fut.result().offset for tp, fut in futures.items()}


def wait_no_open_transactions(settings: Settings, topic: str, timeout: float = 90) -> float:
    """Wait until the last stable offset equals the high watermark on every partition of
    ``topic`` (no open transaction hides records from ``read_committed`` readers);
    return the seconds waited. An aborted transaction of a killed producer resolves when
    its ``transactional.id`` is re-initialised or after ``transaction.timeout.ms``."""
    client = admin(settings)
    n = len(client.list_topics(topic, timeout=10).topics[topic].partitions)
    tps = [TopicPartition(topic, p) for p in range(n)]
    started = time.monotonic()
    while True:
        stable = _offsets(client, tps, IsolationLevel.READ_COMMITTED)
        high = _offsets(client, tps, IsolationLevel.READ_UNCOMMITTED)
        if stable == high:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{topic}: a transaction stayed open for {timeout}s "
                                 f"(last stable {stable}, high watermark {high})")
        time.sleep(0.5)


def read_committed(settings: Settings, topic: str, timeout: float = 60) -> list[Record]:
    """Every committed record of ``topic``, as a ``read_committed`` consumer sees it, once
    no transaction is open (so the read is complete)."""
    wait_no_open_transactions(settings, topic)
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"reader-{time.time_ns()}", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    n = len(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in range(n)])
    out: list[Record] = []
    pending = set(range(n))
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: no end of partition for {sorted(pending)} "
                                     f"after {timeout}s")
            for m in c.consume(1000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise KafkaException(err)
                out.append(Record(cast(int, m.partition()), cast(int, m.offset()), m.key(),
                                  m.value(), parse_headers(cast(Any, m.headers()))))
    finally:
        c.close()
    return out


@dataclass(frozen=True)
class Outputs:
    """Everything a run published."""

    changes: list[Record]
    current: list[Record]
    dlq: list[Record]
    extra: dict[str, list[Record]]  # further output roles (alerts, ...) when present
    txn_wait_s: float = 0.0  # how long open transactions hid records from the reader


# Outputs compared by id. The changelog is the run's private state, not an output.
EXTRA_OUTPUT_ROLES = ("alerts",)


def read_outputs(settings: Settings) -> Outputs:
    t = settings.topics
    started = time.monotonic()
    for role in ("changes", "current", "dlq", *EXTRA_OUTPUT_ROLES):
        if hasattr(t, role):
            wait_no_open_transactions(settings, getattr(t, role))
    waited = time.monotonic() - started
    extra = {r: read_committed(settings, getattr(t, r)) for r in EXTRA_OUTPUT_ROLES
             if hasattr(t, r)}
    return Outputs(read_committed(settings, t.changes), read_committed(settings, t.current),
                   read_committed(settings, t.dlq), extra, waited)


# ------------------------------------------------------------------------ comparing
@dataclass
class Comparison:
    """One output topic of a run against the reference, by record id."""

    name: str
    expected: int
    received: int
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # id -> copies beyond one
    unexpected: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return sum(self.duplicated.values())

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected or self.differing)

    def summary(self) -> str:
        return (f"{self.name}: expected {self.expected}, received {self.received} "
                f"({self.received - self.duplicates} distinct), missing {len(self.missing)}, "
                f"duplicates {self.duplicates}, unexpected {len(self.unexpected)}, "
                f"differing {len(self.differing)}")

    def detail(self, n: int = 5) -> str:
        return (f"{self.summary()}; missing e.g. {self.missing[:n]}, duplicated e.g. "
                f"{list(self.duplicated.items())[:n]}, unexpected e.g. {self.unexpected[:n]}, "
                f"differing e.g. {self.differing[:n]}")


def compare(name: str, got: list[tuple[str, Any]], ref: Mapping[str, Any]) -> Comparison:
    """Compare ``(id, payload)`` pairs with the reference ``{id: payload}``."""
    cmp = Comparison(name, len(ref), len(got))
    seen: dict[str, Any] = {}
    copies: Counter[str] = Counter()
    for rid, payload in got:
        copies[rid] += 1
        if rid in seen:
            if payload != seen[rid]:
                cmp.differing.append(f"{rid} (copies differ)")
            continue
        seen[rid] = payload
        if rid not in ref:
            cmp.unexpected.append(rid)
        elif payload != ref[rid]:
            cmp.differing.append(rid)
    cmp.duplicated = {rid: n - 1 for rid, n in copies.items() if n > 1}
    cmp.missing = sorted(set(ref) - set(seen))
    return cmp


def _change_pairs(records: list[Record]) -> list[tuple[str, Any]]:
    return [(r.json()["event_id"], r.json()) for r in records]


def _dlq_pairs(records: list[Record]) -> list[tuple[str, Any]]:
    out = []
    for r in records:
        h = r.headers
        rid = f"{h.get('dlq.source.topic')}[{h.get('dlq.source.partition')}]@" \
              f"{h.get('dlq.source.offset')}"
        out.append((rid, (r.key, r.value, h.get("dlq.reason"))))
    return out


def _last_per_key(records: list[Record]) -> dict[str, Any]:
    last: dict[str, Any] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        last[(r.key or b"").decode()] = r.json()
    return last


def _generic_pairs(records: list[Record]) -> list[tuple[str, Any]]:
    out = []
    for r in records:
        try:
            payload = r.json()
        except orjson.JSONDecodeError:
            payload = None
        rid = payload.get("event_id") if isinstance(payload, dict) else None
        out.append((str(rid) if rid else (r.value or b"").hex(), payload if rid else r.value))
    return out


@dataclass
class RunReport:
    """A run's outputs against the reference's, topic by topic."""

    changes: Comparison
    current: Comparison
    dlq: Comparison
    extra: list[Comparison]

    @property
    def all(self) -> list[Comparison]:
        return [self.changes, self.current, self.dlq, *self.extra]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.all)

    def detail(self) -> str:
        return "\n".join(c.detail() for c in self.all)


def compare_runs(got: Outputs, ref: Outputs) -> RunReport:
    """Changes and extra outputs by ``event_id`` with full payloads; ``segments.current``
    by its final value per user; dead letters by source position, bytes and reason."""
    ref_changes = dict(_change_pairs(ref.changes))
    assert len(ref_changes) == len(ref.changes), "the reference itself has duplicate ids"
    current_ref = _last_per_key(ref.current)
    current_got = _last_per_key(got.current)
    extra = [compare(role, _generic_pairs(got.extra.get(role, [])),
                     dict(_generic_pairs(recs))) for role, recs in ref.extra.items()]
    return RunReport(
        changes=compare("segments.changes", _change_pairs(got.changes), ref_changes),
        current=compare("segments.current (final per user)", list(current_got.items()),
                        current_ref),
        dlq=compare("dlq", _dlq_pairs(got.dlq), dict(_dlq_pairs(ref.dlq))),
        extra=extra,
    )


def figures(label: str, records: int, got: Outputs, report: RunReport, **more: object) -> str:
    """The line a test prints: events in, changes out, duplicates, losses, and more."""
    ch = report.changes
    extra = ", ".join(f"{k}={v}" for k, v in more.items())
    return (f"\n{label}: events in {records}; changes out {ch.received} "
            f"({ch.received - ch.duplicates} distinct, reference {ch.expected}); "
            f"duplicates {ch.duplicates}; losses {len(ch.missing)}; differing "
            f"{len(ch.differing)}; unexpected {len(ch.unexpected)}; current records "
            f"{len(got.current)}; dead letters {len(got.dlq)}; open transactions waited "
            f"out {got.txn_wait_s:.1f}s; {extra}\n{report.detail()}")


def dlq_positions(outputs: Outputs) -> list[tuple[str, int, int]]:
    """The source positions of the dead letters, one per record received."""
    return [(r.headers["dlq.source.topic"], int(r.headers["dlq.source.partition"]),
             int(r.headers["dlq.source.offset"])) for r in outputs.dlq]


def replay_agrees(settings: Settings, produced: Produced, ref: Outputs, out_dir: Path) -> int:
    """Check that the reference worker run agrees with the in-process replay of the valid
    events: the same (user, segment, change, time) decisions and the same final segments.
    The replay numbers sources by line, so ids and ``source`` cannot be compared; the
    worker reference is what the run under test is compared with. Returns the count of
    replayed changes."""
    from streams.contracts.decode import EventDecoder
    from streams.runtime.app import build_processor
    from streams.runtime.replay import replay

    jsonl = write_jsonl(produced.events, out_dir / "events.jsonl")
    replay(jsonl, out_dir / "replay", processor=build_processor(settings),
           decoder=EventDecoder.from_settings(settings), finalize=False,
           partitions=settings.partitions)
    key = lambda c: (c["user_id"], c["segment"], c["change"], c["at_ms"])  # noqa: E731
    replayed = [orjson.loads(x) for x in (out_dir / "replay" / "changes.jsonl").open("rb")]
    worker = [r.json() for r in ref.changes]
    assert sorted(map(key, worker)) == sorted(map(key, replayed)), \
        "the uninterrupted worker run and the in-process replay disagree"
    segments = {r["user_id"]: r["segments"] for r in
                map(orjson.loads, (out_dir / "replay" / "snapshot.jsonl").open("rb"))}
    current = {k: sorted(v["segments"]) for k, v in _last_per_key(ref.current).items()}
    assert {u: s for u, s in segments.items() if s or u in current} == current
    return len(replayed)
