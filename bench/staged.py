"""Throughput with the models in a scoring stage of their own, against the models inline
and the rules-only worker, over the real broker, in the same run.

Why: with the models inline (``SEGSTREAM_MODELS_ENABLED=true``) every event pays for
label bookkeeping, scoring, learning and the model segments in the worker's one
process, which about halves its throughput. ``SEGSTREAM_MODELS_STAGE=separate`` moves
that work to ``segstream scoring``: the event worker only decides which users are due
for scoring and writes them to the scoring topic in its transactions, and the scoring
stage, a consumer group of its own, consumes them. On this 2-core machine the two
processes can each use a core. This script says what that buys, per event worker and
end to end, next to the rules-only worker (the ceiling of the event worker) measured in
the same round:

1. Simulate N events (``simulate(users, events, seed=11)``) and produce them once to
   shared input topics; a bare consumer reads them (the raw limit, for reference).
2. Per round, the configurations in alternating order (timings on this machine drift by
   10-30 %), each with its own output topics, groups, state and model directories over
   the same inputs:

   - ``rules``: the rules-only worker, in-process (``run_inprocess``);
   - ``inline``: the models in the worker, in-process;
   - ``staged``: ``segstream scoring`` is started as a subprocess and waited for until
     its group holds every partition of the scoring topic and its start-up (model
     warm-up) is over; then the event worker (``SEGSTREAM_MODELS_STAGE=separate``) runs
     in-process while the scoring stage runs concurrently. Figures: the event worker's
     events/s (first batch until its group's committed offsets cover all N, as for the
     others); the scoring requests it sent (its ``segstream_scoring_requests_total``);
     end to end, N / the time from the event worker's first batch until the event worker
     is done *and* the scoring group has committed every request; the requests still
     waiting when the event worker was done; the scoring stage's segment changes (the
     segments on model scores, counted on the changes topic) and its CPU time.

   "Every request committed": with exactly-once the scoring topic's end offsets also
   count the event worker's commit markers, and a worker commits the offset after the
   last *record* it processed, so the scoring group's committed offsets are compared
   with the offset after each partition's last committed request, read once the event
   worker has stopped and no transaction is open on the topic (they are also printed
   against the end offsets). The scoring group's committed offsets are sampled every
   20 ms by a thread, so reading that does not delay the figure.
   - ``split``: each stage on its own (:func:`run_split`): the event worker with no
     scoring stage running, then the scoring stage over the requests left on the topic.
     In a deployment each stage has cores of its own; here both share two cores with the
     broker, so ``staged`` measures this machine and ``split`` what each stage sustains
     with a core to itself (the pipeline: the lower of the two).
3. Events/s and the ratio to ``rules`` of the same round per round, then the best of the
   rounds.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/staged.py [--events N]
    [--users U] [--rounds R] [--guarantee exactly_once|at_least_once] [--partitions P]
    [--out bench/results/staged.json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from common import (
    GUARANTEES,
    REPO,
    Bench,
    GroupProgress,
    WorkerProc,
    config_env,
    machine_info,
    produce_all,
    raw_limit,
    read_topic,
    registry_total,
    run_inprocess,
    simulate,
    worker_thread,
)
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import logs
from streams.config import Settings

CONFIGS_ORDER = ("rules", "inline", "staged", "split")
# figure -> (configuration, result key), each compared with rules of the same round
FIGURES = {"inline": ("inline", "events_per_s"),
           "staged event worker": ("staged", "events_per_s"),
           "staged end-to-end": ("staged", "e2e_events_per_s"),
           "event worker alone": ("split", "events_per_s"),
           "scoring stage alone": ("split", "scoring_alone_events_per_s"),
           "a core per stage": ("split", "pipeline_events_per_s")}
TAIL = 500  # records read back from the end of each scoring partition


# ---------------------------------------------------------------- the stage
@dataclass
class StageProc(WorkerProc):
    """A ``segstream scoring`` subprocess (WorkerProc runs ``segstream worker``)."""

    command: str = "scoring"

    def __post_init__(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", self.command], cwd=REPO,
                env={**os.environ, **self.env, "SEGSTREAM_LOG_LEVEL": "INFO"},
                stdout=fh, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_problems(self) -> list[str]:
        """Warnings, errors and tracebacks of its log, but for the models' drift
        warnings (the simulated traffic makes them; the inline worker logs them too)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines()
                if ('"level":"WARNING"' in line or '"level":"ERROR"' in line
                    or '"level":"CRITICAL"' in line or line.startswith("Traceback"))
                and "drift detected" not in line]


def stop_stage(proc: StageProc, scoring: Settings) -> None:
    """SIGTERM (kill if it will not stop), then drop the stage's state directory."""
    try:
        proc.stop()
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        shutil.rmtree(scoring.state_dir, ignore_errors=True)


def wait_stage_ready(scoring: Settings, proc: StageProc, timeout: float = 180) -> float:
    """Wait until the stage's group holds every partition of the scoring topic and the
    process has stopped using CPU for its start-up; return the seconds waited."""
    want = {(scoring.topics.scoring, p) for p in range(scoring.partitions)}
    # one admin client (not one per look as common.group_assignment): each destroyed
    # client logs a librdkafka notice
    client = AdminClient({**scoring.kafka_common(), "log_level": 4})
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        proc.check()
        held = stage_assignment(client, scoring.group_id)
        if want <= held:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the scoring stage holds {sorted(held)} after {timeout}s, "
                             f"not {sorted(want)}:\n"
                             f"{proc.log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    # warm-up runs before the consumer subscribes, but restore and the first fetches
    # follow the assignment: let them finish before the event worker is timed
    last = proc.cpu_seconds()
    settle_deadline = time.monotonic() + 30
    while time.monotonic() < settle_deadline:
        time.sleep(0.5)
        proc.check()
        now = proc.cpu_seconds()
        if now - last < 0.05:
            break
        last = now
    return time.perf_counter() - t0


def stage_assignment(client: AdminClient, group: str) -> set[tuple[str, int]]:
    """The topic-partitions the members of ``group`` hold (empty: no group yet)."""
    try:
        desc = client.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:
        return set()
    return {(tp.topic, tp.partition) for m in desc.members if m.assignment is not None
            for tp in m.assignment.topic_partitions}


class CommitWatch:
    """The committed offsets of a group on one topic, per partition, sampled by a thread
    every ``every`` seconds; keeps the time each new set of offsets was first seen.
    read_uncommitted for the reason given in :class:`common.GroupProgress`."""

    def __init__(self, settings: Settings, topic: str, every: float = 0.02) -> None:
        self._c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                            "group.id": settings.group_id, "enable.auto.commit": False,
                            "isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        self._every = every
        self.samples: list[tuple[float, tuple[int, ...]]] = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, name="bench-commit-watch", daemon=True)
        self._th.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._c.committed(self._tps, timeout=10)
            except KafkaException:
                got = None
            if got is not None:
                offsets = tuple(max(tp.offset, 0) for tp in got)
                if not self.samples or self.samples[-1][1] != offsets:
                    self.samples.append((time.perf_counter(), offsets))
            self._stop.wait(self._every)

    def latest(self) -> tuple[int, ...]:
        return self.samples[-1][1] if self.samples else (0,) * len(self._tps)

    def at(self, t: float) -> tuple[int, ...]:
        """The offsets last seen at or before ``t``."""
        out: tuple[int, ...] = (0,) * len(self._tps)
        for ts, offsets in self.samples:
            if ts > t:
                break
            out = offsets
        return out

    def reached(self, targets: Sequence[int]) -> float | None:
        """When every partition's committed offset first reached its target."""
        for ts, offsets in list(self.samples):
            if all(o >= t for o, t in zip(offsets, targets, strict=True)):
                return ts
        return None

    def close(self) -> None:
        self._stop.set()
        self._th.join(30)
        self._c.close()


def request_ends(settings: Settings, topic: str, timeout: float = 60) -> tuple[list[int],
                                                                                   list[int]]:
    """Per partition of ``topic``: (the offset after its last committed record, its end
    offset). The first is what a group that processed every record has committed; the
    end offset also counts transaction markers. Waits until no transaction is open on
    the topic (the last stable offset equals the end offset everywhere)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                  "group.id": f"bench-tail-{time.time_ns()}", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "enable.partition.eof": True})
    parts = range(settings.partitions)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in parts]
            last, eof = _read_tail(c, topic, ends, list(parts), deadline)
            # no data in the tail window (only markers or aborted records): whole partition
            again = [p for p in parts if ends[p] > 0 and p not in last]
            if again:
                more, more_eof = _read_tail(c, topic, ends, again, deadline, whole=True)
                last.update(more)
                eof.update(more_eof)
            if all(eof.get(p, 0) >= ends[p] for p in parts):
                return [last.get(p, -1) + 1 for p in parts], ends
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: a transaction stays open on {topic}: last stable "
                                 f"{eof}, end offsets {ends}")
            time.sleep(0.05)
    finally:
        c.close()


def _read_tail(c: Consumer, topic: str, ends: list[int], parts: list[int], deadline: float,
               whole: bool = False) -> tuple[dict[int, int], dict[int, int]]:
    """Read ``parts`` of ``topic`` to their ends (the last ``TAIL`` records, or all):
    (last data offset, end-of-partition offset) per partition."""
    todo = {p for p in parts if ends[p] > 0}
    last: dict[int, int] = {}
    eof: dict[int, int] = {}
    if not todo:
        return last, eof
    c.assign([TopicPartition(topic, p, 0 if whole else max(0, ends[p] - TAIL))
              for p in sorted(todo)])
    try:
        while todo:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: could not read {topic} partitions {sorted(todo)} "
                                 "to their end")
            for m in c.consume(1000, 0.2):
                p = m.partition()
                err = m.error()
                if err is None:
                    last[p] = max(last.get(p, -1), m.offset())
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof[p] = m.offset()
                    todo.discard(p)
    finally:
        c.unassign()
    return last, eof


def run_staged(settings: Settings, env: dict[str, str], n: int, log: Path,
               timeout: float = 1800) -> dict[str, Any]:
    """The event worker in-process (as :func:`common.run_inprocess`) with a concurrent
    ``segstream scoring`` subprocess; see the module docstring for what is timed."""
    from prometheus_client import CollectorRegistry

    from streams.runtime.app import build_worker

    scoring = settings.scoring_stage()
    topic = settings.topics.scoring
    proc = StageProc(dict(env), log)
    probe: GroupProgress | None = None
    watch: CommitWatch | None = None
    th: threading.Thread | None = None
    w = None
    try:
        ready_s = wait_stage_ready(scoring, proc)
        cpu_ready = proc.cpu_seconds()
        watch = CommitWatch(scoring, topic)
        probe = GroupProgress(settings)
        w = build_worker(settings, CollectorRegistry())
        th, errors = worker_thread(w)
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        th.start()

        def check(event_worker: bool = True) -> None:
            proc.check()
            if event_worker and (errors or not th.is_alive()):
                raise SystemExit(f"bench: event worker stopped: {errors[:1]!r}")
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: staged run not done in {timeout}s: event worker "
                                 f"processed {w.processed} of {n}; scoring committed "
                                 f"{list(watch.latest())}:\n"
                                 f"{proc.log.read_text(errors='replace')[-3000:]}")

        while w.batches == 0:
            check()
            time.sleep(0.005)
        joined = time.perf_counter()
        cpu_joined = proc.cpu_seconds()
        cpu_self = time.process_time()
        while probe.total() < n:
            check()
            time.sleep(0.02)
        event_done = time.perf_counter()
        # the event worker is done with its inputs: stop it, then the scoring topic is
        # final (no input, no timer, no request after this)
        w.stop()
        th.join(120)
        if errors:
            raise SystemExit(f"bench: event worker failed: {errors[0]!r}")
        if th.is_alive():
            raise SystemExit("bench: event worker did not stop in 120s")
        requests = int(registry_total(w.metrics.registry, "segstream_scoring_requests"))
        targets, ends = request_ends(settings, topic)
        while (scoring_done := watch.reached(targets)) is None:
            check(event_worker=False)
            time.sleep(0.02)
        cpu_done = proc.cpu_seconds()
        cpu_self = time.process_time() - cpu_self
        committed = watch.latest()
        backlog = sum(max(0, t - o) for t, o in zip(targets, watch.at(event_done),
                                                        strict=True))
    finally:
        if w is not None:
            w.stop()
        if th is not None:
            th.join(120)
        if probe is not None:
            probe.close()
        if watch is not None:
            watch.close()
        stop_stage(proc, scoring)
    end = max(event_done, scoring_done)
    event_s, e2e_s = event_done - joined, end - joined
    reg = w.metrics.registry
    return {
        "events": w.processed, "seconds": round(event_s, 3), "events_per_s": n / event_s,
        "us_per_event": event_s / n * 1e6, "join_s": round(joined - started, 3),
        "stage_ready_s": round(ready_s, 3),
        "stage_warmup_cpu_s": round(cpu_ready, 2),
        "segment_changes": int(registry_total(reg, "segstream_segment_changes")),
        "dead_letters": int(registry_total(reg, "segstream_dlq")),
        "duplicates": w.duplicates, "batches": w.batches,
        "scoring_requests": requests,
        "scoring_topic_last_offsets": sum(targets), "scoring_topic_end_offsets": sum(ends),
        "scoring_committed": sum(committed),
        "e2e_seconds": round(e2e_s, 3), "e2e_events_per_s": n / e2e_s,
        "scoring_drain_s": round(max(0.0, scoring_done - event_done), 3),
        "scoring_backlog_at_event_done": backlog,
        "scoring_cpu_s": round(cpu_done - cpu_joined, 2),
        "scoring_cores": round((cpu_done - cpu_joined) / e2e_s, 2),
        "bench_process_cpu_s": round(cpu_self, 2),
        "scoring_log_problems": proc.log_problems()[:5],
    }


def run_split(settings: Settings, env: dict[str, str], n: int, log: Path,
              timeout: float = 1800) -> dict[str, Any]:
    """Each stage on its own: the event worker with no scoring stage running (its
    requests wait on the topic), then ``segstream scoring`` over that backlog.

    Why: in a deployment each stage has its own cores (pods, machines); here the two
    share two cores with the broker and this process, so the concurrent figure is the
    machine's, not the design's. Alone, each stage's rate is what it can sustain with a
    core of its own, and the pipeline's is the lower of the two. The scoring stage is
    timed from the moment its group holds every partition (start-up and model warm-up
    before that are not counted) until it has committed every request."""
    scoring = settings.scoring_stage()
    topic = settings.topics.scoring
    r = run_inprocess(settings, n)  # 1. the event worker alone
    targets, ends = request_ends(settings, topic)
    # 2. the scoring stage alone, over the backlog
    proc = StageProc(dict(env), log)
    watch = CommitWatch(scoring, topic)
    client = AdminClient({**scoring.kafka_common(), "log_level": 4})
    want = {(topic, p) for p in range(scoring.partitions)}
    deadline = time.monotonic() + timeout
    try:
        while not want <= stage_assignment(client, scoring.group_id):
            proc.check()
            if time.monotonic() > deadline:
                raise SystemExit("bench: the scoring stage never held every partition")
            time.sleep(0.05)
        assigned = time.perf_counter()
        cpu0 = proc.cpu_seconds()
        while (done := watch.reached(targets)) is None:
            proc.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: scoring stage committed {list(watch.latest())} "
                                 f"of {targets} in {timeout}s")
            time.sleep(0.02)
        cpu = proc.cpu_seconds() - cpu0
    finally:
        watch.close()
        stop_stage(proc, scoring)
    drain_s = max(done - assigned, 1e-9)
    records = sum(targets)
    r.update({"scoring_topic_last_offsets": records, "scoring_topic_end_offsets": sum(ends),
              "scoring_alone_s": round(drain_s, 3),
              "scoring_alone_records_per_s": records / drain_s,
              "scoring_alone_events_per_s": n / drain_s,
              "scoring_alone_cpu_s": round(cpu, 2),
              "pipeline_events_per_s": min(r["events_per_s"], n / drain_s),
              "scoring_log_problems": proc.log_problems()[:5]})
    return r


# ---------------------------------------------------------------- counting
def model_segments(settings: Settings) -> set[str]:
    """The segments on model scores (the scoring stage's share of the policy)."""
    from streams.runtime.app import MODEL_FEATURES, build_policy

    return {r.name for r in build_policy(settings).split(MODEL_FEATURES)[1].rules}


def count_changes(settings: Settings, names: set[str]) -> tuple[int, int]:
    """(change records on the run's changes topic, of them on segments in ``names``)."""
    by_segment: Counter[str] = Counter()
    for m in read_topic(settings, settings.topics.changes):
        try:
            by_segment[orjson.loads(m.value())["segment"]] += 1
        except (orjson.JSONDecodeError, KeyError, TypeError):
            by_segment["?"] += 1
    return sum(by_segment.values()), sum(c for s, c in by_segment.items() if s in names)


# ---------------------------------------------------------------- printing
def fmt(x: float) -> str:
    return f"{x:,.0f}" if x == x else "n/a"


def describe(config: str, r: dict[str, Any]) -> str:
    base = (f"{r['events']} in {r['seconds']:.2f}s = {fmt(r['events_per_s'])} events/s "
            f"({r['us_per_event']:.1f} us/event), join {r['join_s']:.2f}s, "
            f"{r['segment_changes']} segment changes, {r['dead_letters']} dead letters")
    if config == "inline":
        base += f"; of the changes {r['model_segment_changes']} on model segments"
    if config == "split":
        return (f"event worker alone {base}\n"
                f"           scoring stage alone over the backlog "
                f"({r['scoring_topic_last_offsets']} offsets incl. commit markers): "
                f"{r['scoring_alone_s']:.2f}s = "
                f"{fmt(r['scoring_alone_events_per_s'])} input events/s "
                f"({fmt(r['scoring_alone_records_per_s'])} offsets/s, CPU "
                f"{r['scoring_alone_cpu_s']:.1f}s); a core per stage: "
                f"{fmt(r['pipeline_events_per_s'])} events/s")
    if config != "staged":
        return base
    problems = r["scoring_log_problems"]
    return (f"event worker {base}\n"
            f"           scoring stage: ready after {r['stage_ready_s']:.1f}s "
            f"({r['stage_warmup_cpu_s']:.1f}s CPU of start-up); "
            f"{r['scoring_requests']} requests sent ({r['scoring_requests'] / r['events']:.1%}"
            f" of events); scoring topic offsets after the last request "
            f"{r['scoring_topic_last_offsets']} (end offsets "
            f"{r['scoring_topic_end_offsets']}), scoring group committed "
            f"{r['scoring_committed']}\n"
            f"           end to end {r['e2e_seconds']:.2f}s = {fmt(r['e2e_events_per_s'])} "
            f"events/s; ~{r['scoring_backlog_at_event_done']} requests waiting when the event "
            f"worker was done, drained {r['scoring_drain_s']:.2f}s later; scoring CPU "
            f"{r['scoring_cpu_s']:.1f}s ({r['scoring_cores']:.2f} cores), bench process "
            f"CPU {r['bench_process_cpu_s']:.1f}s; scoring-stage segment changes "
            f"{r['model_segment_changes']}"
            + (f"\n           scoring log warnings/errors ({len(problems)} shown): "
               + " | ".join(p[:300] for p in problems) if problems else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds, the configurations in alternating order; best kept")
    ap.add_argument("--guarantee", choices=GUARANTEES, default="exactly_once")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None,
                    help="write every figure as JSON here (e.g. bench/results/staged.json)")
    ap.add_argument("--keep", action="store_true", help="keep topics and work directory")
    ap.add_argument("--configs", default=",".join(CONFIGS_ORDER),
                    help="comma-separated subset of " + ",".join(CONFIGS_ORDER)
                    + " (rules is always run: the ratios are to it)")
    args = ap.parse_args(argv)

    configs = tuple(c for c in CONFIGS_ORDER
                    if c == "rules" or c in args.configs.split(","))
    unknown = set(args.configs.split(",")) - set(CONFIGS_ORDER)
    if unknown:
        ap.error(f"--configs: unknown {sorted(unknown)}; choose from {CONFIGS_ORDER}")
    logs.configure("ERROR", True)  # not the models' drift warnings of every run
    bench = Bench(args.partitions, keep=args.keep)
    results: dict[str, Any] = {"machine": machine_info(), "params": vars(args) | {
        "out": str(args.out) if args.out else None}, "rounds": []}
    try:
        # 1. produce once, shared inputs; the raw limit over them, for reference
        in_settings = bench.settings(bench.env("in"))
        sim = simulate(args.users, args.events, seed=11)
        n, produce_s = produce_all(in_settings, sim.records)
        print(f"produced {sim.describe()} to {args.partitions}-partition topics in "
              f"{produce_s:.1f}s ({n / produce_s:,.0f}/s)")
        raw = raw_limit(in_settings, n, f"{bench.run}-raw")
        print(f"raw consume+decode (reference): {fmt(raw['events_per_s'])} events/s")
        results["raw"] = raw
        logs_dir = bench.dir("logs")

        # 2. the rounds
        for i in range(args.rounds):
            order = configs if i % 2 == 0 else configs[::-1]
            print(f"\nround {i + 1}/{args.rounds} ({', '.join(order)}), {args.guarantee}:")
            got: dict[str, dict[str, Any]] = {}
            for config in order:
                name = f"{config}{i}"
                base = "rules" if config == "rules" else "models"
                extra = config_env(base, args.guarantee)
                if config in ("staged", "split"):
                    extra["SEGSTREAM_MODELS_STAGE"] = "separate"
                env = bench.env(name, inputs="in", **extra)
                settings = bench.settings(env)
                if config == "staged":
                    r = run_staged(settings, env, n, logs_dir / f"{name}-scoring.log")
                elif config == "split":
                    r = run_split(settings, env, n, logs_dir / f"{name}-scoring.log")
                else:
                    r = run_inprocess(settings, n)
                if config != "rules":
                    # after the run, untimed: the changes on the segments on model scores
                    total, r["model_segment_changes"] = count_changes(
                        settings, model_segments(settings))
                    r["changes_on_topic"] = total
                shutil.rmtree(bench.work / name, ignore_errors=True)
                got[config] = r
                print(f"  {config:7} {describe(config, r)}")
            rules = got["rules"]["events_per_s"]
            ratios = {f"{k} / rules": got[c][key] / rules
                      for k, (c, key) in FIGURES.items() if c in got}
            print("  events/s: " + ", ".join([f"rules {fmt(rules)}"] + [
                f"{k} {fmt(got[c][key])}" for k, (c, key) in FIGURES.items() if c in got]))
            print("  " + "; ".join(f"{k} {v:.1%}" for k, v in ratios.items()))
            results["rounds"].append({"order": list(order), "results": got,
                                      "ratios": ratios})

        # 3. best of the rounds
        rounds = results["rounds"]
        best = {"rules": max(r["results"]["rules"]["events_per_s"] for r in rounds)}
        best.update({k: max(r["results"][c][key] for r in rounds)
                     for k, (c, key) in FIGURES.items() if c in configs})
        results["best"] = best
        print(f"\nbest of {args.rounds} round(s), {n:,} events, {args.users:,} users, "
              f"{args.guarantee}:")
        for k, v in best.items():
            ratio = "" if k == "rules" else f"  {v / best['rules']:.1%} of rules"
            print(f"  {k:20} {fmt(v):>8} events/s{ratio}")
        best_ratios = {k: max(r["ratios"][k] for r in rounds) for k in rounds[0]["ratios"]}
        results["best_ratios_per_round"] = best_ratios
        print("  best per-round ratios: "
              + "; ".join(f"{k} {v:.1%}" for k, v in best_ratios.items()))
    finally:
        bench.cleanup()
        if args.out is not None and results["rounds"]:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2, default=str,
                                           allow_nan=True) + "\n")
            print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
