"""The benchmark suite: every performance figure of segstream, each next to the raw limit
measured over the same topics in the same run, plus the targets and a regression guard.

Why one command: the machine is shared and its speed drifts, so absolute events/s from
different runs are not comparable; ratios to a bare ``consume`` + ``orjson.loads`` of the
same input, measured minutes apart, are. Sections (``--only`` picks some):

- ``raw``: the raw limit (always measured; every ratio refers to it).
- ``replay``: ``segstream replay``'s processing in-process over the same events as
  JSONL, no Kafka (rules only), against reading + decoding the file.
- ``throughput``: the worker in-process over the broker, rules / models / text analysis
  x at-least-once / exactly-once; from the first batch until every input is committed.
- ``latency``: a ``segstream worker`` subprocess (exactly-once) at fixed offered loads;
  latency = when a read_committed consumer of the changes topic receives a segment
  change minus the broker append time (LogAppendTime) of the input that caused it.
- ``memory``: a worker subprocess over 100k and 1M users: peak RSS (VmHWM), state bytes
  on disk per user, mean encoded state size.
- ``scale``: 1 vs 2 worker subprocesses of one group over the same 6-partition topics.

``--quick`` (under a minute): raw + rules/at-least-once + models/exactly-once over 100k
events of 10k users, compared with ``bench/baseline.json`` (worker / raw ratios); exit
status 1 when a ratio is more than 25 % below its baseline.

Usage (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)::

    python bench/suite.py                     # full suite, issue sizes (~20-30 min)
    python bench/suite.py --quick             # regression guard
    python bench/suite.py --only raw,throughput --events 30000 --users 3000
    python bench/suite.py --set SEGSTREAM_COMMIT_INTERVAL_MS=100 --only latency
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CONFIGS,
    GUARANTEES,
    Bench,
    GroupProgress,
    RateProducer,
    Sim,
    WorkerProc,
    check_config_names,
    config_env,
    dir_bytes,
    machine_info,
    percentile,
    produce_all,
    raw_limit,
    run_inprocess,
    run_subprocesses,
    simulate,
    write_jsonl,
)

from streams import logs

SECTIONS = ("raw", "replay", "throughput", "latency", "memory", "scale")
BASELINE = Path(__file__).resolve().parent / "baseline.json"
REGRESSION_TOLERANCE = 0.25
QUICK_RUNS = (("rules", "at_least_once"), ("models", "exactly_once"))
GIB = 1024 ** 3

# The targets, per worker process.
TARGETS = (
    ("throughput rules+features, at-least-once", "throughput/rules/at_least_once",
     ">=", 50_000, "events/s"),
    ("throughput with models, exactly-once", "throughput/models/exactly_once",
     ">=", 30_000, "events/s"),
    ("p99 latency at 10k events/s, exactly-once", "latency/10000/p99_ms", "<", 250, "ms"),
    ("peak RSS with 1M users", "memory/1000000/peak_rss_bytes", "<", GIB, "bytes"),
)


def log(msg: str) -> None:
    print(msg, flush=True)


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x == x else "n/a"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    log(f"\n== {title}")
    log("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    log("  ".join("-" * w for w in widths))
    for r in rows:
        log("  ".join(c.rjust(w) if i else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))))


# ------------------------------------------------------------------- sections
def section_replay(bench: Bench, sim: Sim, raw: float) -> dict[str, Any]:
    """In-process replay (no Kafka) of the same events, rules only, 6 partitions."""
    from streams.config import Settings
    from streams.contracts.decode import EventDecoder
    from streams.runtime.app import build_processor
    from streams.runtime.replay import replay

    d = bench.dir("replay")
    path = d / "events.jsonl"
    write_jsonl(sim, path)
    t = time.perf_counter()
    with path.open("rb") as fh:
        n = sum(1 for line in fh if orjson.loads(line))
    file_rate = n / (time.perf_counter() - t)
    settings = Settings.from_env({**os.environ, **CONFIGS["rules"]})
    report = replay(path, d / "out", processor=build_processor(settings),
                    decoder=EventDecoder.from_settings(settings), assume_sorted=True,
                    partitions=bench.partitions)
    rate = report.lines / report.seconds
    out = {"events": report.lines, "seconds": round(report.seconds, 3), "events_per_s": rate,
           "us_per_event": 1e6 / rate, "ratio_to_raw": rate / raw,
           "file_read_decode_events_per_s": file_rate, "ratio_to_file_decode": rate / file_rate,
           "segment_changes": report.changes, "users": report.users,
           "dead_letters": dict(report.dead_letters), "config": "rules",
           "note": "includes writing changes.jsonl and the final snapshot of every user"}
    table("replay (in-process, no Kafka, rules only)",
          ["mode", "events/s", "us/event", "x raw", "changes"],
          [["read+orjson file", fmt_rate(file_rate), f"{1e6 / file_rate:.1f}", "", ""],
           ["replay --sorted", fmt_rate(rate), f"{1e6 / rate:.1f}", f"{rate / raw:.1%}",
            f"{report.changes:,}"]])
    return out


def section_throughput(bench: Bench, inputs: str, n: int, raw: float,
                       runs: list[tuple[str, str]]) -> dict[str, Any]:
    """The in-process worker over the shared inputs, one run per (config, guarantee)."""
    out: dict[str, Any] = {}
    rows = []
    for config, guarantee in runs:
        name = f"{config}-{guarantee.replace('_', '')}"
        env = bench.env(name, inputs=inputs, **config_env(config, guarantee))
        settings = bench.settings(env)
        logs.configure("ERROR", True)
        log(f"  worker {config}/{guarantee} ...")
        r = run_inprocess(settings, n)
        r["ratio_to_raw"] = r["events_per_s"] / raw
        out.setdefault(config, {})[guarantee] = r
        rows.append([config, guarantee, fmt_rate(r["events_per_s"]),
                     f"{r['us_per_event']:.1f}", f"{r['ratio_to_raw']:.1%}",
                     f"{r['segment_changes']:,}", str(r["dead_letters"]),
                     f"{r['join_s']:.1f}", f"{r['commit_tail_s']:.2f}"])
    table(f"worker throughput over the broker, in-process ({n:,} events)",
          ["config", "guarantee", "events/s", "us/event", "x raw", "changes", "dlq",
           "join s", "tail s"], rows)
    return out


def section_latency(bench: Bench, sim: Sim, raw: float, loads: list[int], seconds: float,
                    config: str, warmup: int = 2000) -> dict[str, Any]:
    """A worker subprocess (exactly-once) at each offered load, on fresh topics."""
    out: dict[str, Any] = {}
    rows = []
    for load in loads:
        name = f"lat{load}"
        metrics_port = _free_port()
        env = bench.env(name, **config_env(config, "exactly_once"),
                        SEGSTREAM_METRICS_PORT=str(metrics_port))
        settings = bench.settings(env)
        d = bench.dir(name)
        warm = sim.records[:warmup]
        timed = sim.records[warmup:]
        if len(timed) < load * seconds:
            log(f"  note: {len(timed):,} events left for the timed part, offered "
                f"{load:,}/s runs {len(timed) / load:.1f}s instead of {seconds:.0f}s")
        log(f"  latency at {load:,} events/s ({config}, exactly_once) ...")
        produce_all(settings, warm)
        probe = GroupProgress(settings)
        proc = WorkerProc(dict(env), d / "worker.log")
        try:
            deadline = time.monotonic() + 180
            while probe.total() < len(warm):
                proc.check()
                if time.monotonic() > deadline:
                    raise SystemExit("bench: latency warm-up not committed within 180s")
                time.sleep(0.05)
            # the change reader starts at the current end: only timed inputs' changes
            reader = ChangeReader(settings)
            reader.start()
            before = worker_timings(metrics_port)
            producer = RateProducer(settings)
            produced, elapsed = producer.run(timed, load, seconds)
            during = worker_timings(metrics_port)
            busy = _busy_share(before, during)
            target = len(warm) + produced
            deadline = time.monotonic() + max(120.0, produced / 1000)
            backlog_at_end = target - max(probe.total(), 0)
            while probe.total() < target:
                proc.check()
                if time.monotonic() > deadline:
                    raise SystemExit("bench: latency inputs not committed in time")
                time.sleep(0.05)
            drained = time.perf_counter()
            time.sleep(1.0)  # the last transaction's changes reach the reader
            reader.stop()
            proc.sample(0)
            parts = worker_timings(metrics_port)
        finally:
            try:
                proc.stop()
            finally:
                probe.close()
        lat = []
        unmatched = 0
        for recv_ms, src in reader.changes:
            key = (src.get("topic"), src.get("partition"), src.get("offset"))
            append = producer.append_ms.get(key)
            if append is None:
                unmatched += 1
                continue
            lat.append(recv_ms - append)
        lat.sort()
        achieved = produced / elapsed
        r = {"offered_events_per_s": load, "achieved_events_per_s": achieved,
             "achieved_ratio": achieved / load, "ratio_to_raw": achieved / raw,
             "produced": produced, "seconds": round(elapsed, 2), "changes": len(lat),
             "changes_without_input": unmatched,
             "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
             "p999_ms": percentile(lat, 99.9), "max_ms": lat[-1] if lat else float("nan"),
             "backlog_at_end_of_load": backlog_at_end,
             "drain_s_after_load": round(drained - reader.started - elapsed, 2),
             "timestamp_types": sorted(producer.ts_types), "config": config,
             "guarantee": "exactly_once", "peak_rss_bytes": proc.peak_rss,
             "worker_timings": parts, "worker_busy_share": busy}
        if producer.ts_types != {2}:
            r["warning"] = ("delivery reports did not carry LogAppendTime (type 2); "
                            "latencies are relative to the producer's create time")
            log(f"  warning: {r['warning']}")
        out[str(load)] = r
        rows.append([f"{load:,}", fmt_rate(achieved), f"{achieved / load:.0%}",
                     f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['p999_ms']:.0f}",
                     f"{r['max_ms']:.0f}", f"{len(lat):,}", f"{backlog_at_end:,}"])
    table(f"end-to-end latency, append time -> change seen by a read_committed consumer "
          f"({config}, exactly_once, worker subprocess)",
          ["offered/s", "achieved/s", "ach.", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
           "changes", "backlog"], rows)
    # Where the time goes, from the worker's own histograms over the whole run: a
    # change becomes visible when its transaction commits, so it waits for the commit
    # interval and then for the transaction itself.
    trows = []
    for load, r in out.items():
        t = r.get("worker_timings") or {}
        b = r.get("worker_busy_share") or {}
        trows.append([f"{int(load):,}"] + [
            f"{t[k]:.0f}" if isinstance(t.get(k), float) else "-"
            for k in ("transaction_mean_ms", "transaction_p99_ms", "commit_mean_ms",
                      "commit_p99_ms", "batch_mean")] + [f"{t.get('transactions', 0):,}"] + [
            f"{b[k]:.0%}" if k in b else "-" for k in ("process", "commit", "busy")])
    table("worker timings during the latency runs (segstream_transaction_seconds: flush "
          "+ send offsets + commit; segstream_commit_seconds: the whole commit step; busy: "
          "share of the offered-load period the loop spent processing / committing)",
          ["offered/s", "txn mean ms", "txn p99 ms", "commit mean ms", "commit p99 ms",
           "batch mean", "transactions", "processing", "committing", "busy"], trows)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_timings(port: int) -> dict[str, Any]:
    """Mean and p99 (bucket bound) of the worker's transaction and commit histograms."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        log(f"  note: worker metrics not scraped ({exc})")
        return {}
    hist: dict[str, dict[str, Any]] = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            h = hist.setdefault(fam.name, {"buckets": []})
            if smp.name.endswith("_bucket"):
                h["buckets"].append((float(smp.labels["le"]), smp.value))
            elif smp.name.endswith("_sum"):
                h["sum"] = smp.value
            elif smp.name.endswith("_count"):
                h["count"] = smp.value

    def summary(name: str, scale: float) -> tuple[float | None, float | None, int]:
        h = hist.get(name)
        if not h or not h.get("count"):
            return None, None, 0
        n = h["count"]
        p99 = next((le for le, c in sorted(h["buckets"]) if c >= 0.99 * n), math.inf)
        return h["sum"] / n * scale, p99 * scale, int(n)

    t_mean, t_p99, t_n = summary("segstream_transaction_seconds", 1000)
    c_mean, c_p99, _ = summary("segstream_commit_seconds", 1000)
    b_mean, _, _ = summary("segstream_batch_size", 1)
    return {"transaction_mean_ms": t_mean, "transaction_p99_ms": t_p99, "transactions": t_n,
            "commit_mean_ms": c_mean, "commit_p99_ms": c_p99, "batch_mean": b_mean,
            "process_seconds_total": hist.get("segstream_batch_process_seconds", {}).get("sum"),
            "commit_seconds_total": hist.get("segstream_commit_seconds", {}).get("sum"),
            "scraped_at": time.monotonic()}


def _busy_share(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float] | None:
    """Share of the wall time between two scrapes the worker loop spent processing and
    committing batches: near 1 the worker is at capacity and queueing makes the tail."""
    keys = ("process_seconds_total", "commit_seconds_total")
    if any(not isinstance(d.get(k), float) for d in (before, after) for k in keys):
        return None
    wall = after["scraped_at"] - before["scraped_at"]
    process = (after[keys[0]] - before[keys[0]]) / wall
    commit = (after[keys[1]] - before[keys[1]]) / wall
    return {"process": round(process, 3), "commit": round(commit, 3),
            "busy": round(process + commit, 3)}


class ChangeReader:
    """A read_committed consumer of the changes topic, from its current end, recording
    (receive wall time ms, change source) per change."""

    def __init__(self, settings: Any) -> None:
        topic = settings.topics.changes
        self.c = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                           "group.id": f"bench-latency-{time.time_ns()}",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "fetch.wait.max.ms": 10, "fetch.min.bytes": 1})
        md = self.c.list_topics(topic, timeout=10)
        tps = []
        for p in sorted(md.topics[topic].partitions):
            hi = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            tps.append(TopicPartition(topic, p, max(hi, 0)))
        self.c.assign(tps)
        self.changes: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-changes", daemon=True)
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self.c.consume(1000, 0.05)
            now_ms = time.time() * 1000
            for m in msgs:
                if m.error() is None and m.value():
                    self.changes.append((now_ms, orjson.loads(m.value()).get("source") or {}))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.c.close()


def _state_sizes(state_root: Path) -> dict[str, Any]:
    """Users and mean encoded state size over the RocksDB stores (worker stopped)."""
    from rocksdict import Options, Rdict

    users, total = 0, 0
    for part in sorted(state_root.glob("*/p*")):
        opts = Options(raw_mode=True)
        db = Rdict(str(part), opts)
        try:
            for k, v in db.items(from_key=b"u:"):
                if not k.startswith(b"u:"):
                    break
                users += 1
                total += len(v)
        finally:
            db.close()
    return {"stored_users": users, "mean_encoded_state_bytes": total / users if users else 0}


def section_memory(bench: Bench, sizes: list[tuple[int, int]], shared: dict[int, tuple[str,
                   int]], raw: float, config: str, guarantee: str) -> dict[str, Any]:
    """A worker subprocess over each (users, events): peak RSS, state bytes per user."""
    out: dict[str, Any] = {}
    rows = []
    for users, events in sizes:
        if users in shared:
            inputs, n = shared[users]
        else:
            log(f"  memory: simulating {events:,} events of {users:,} users ...")
            sim = simulate(users, events, seed=13)
            log(f"  {sim.describe()}")
            inputs = f"mem{users}"
            in_settings = bench.settings(bench.env(inputs))
            n, secs = produce_all(in_settings, sim.records)
            del sim
            log(f"  produced {n:,} in {secs:.1f}s")
        name = f"mem{users}-run"
        env = bench.env(name, inputs=inputs, **config_env(config, guarantee))
        settings = bench.settings(env)
        d = bench.dir(name)
        log(f"  memory: worker subprocess over {users:,} users ({config}/{guarantee}) ...")
        r = run_subprocesses(env, settings, n, 1, d)
        state_root = settings.state_dir
        disk = dir_bytes(state_root)
        sizes_ = _state_sizes(state_root)
        model_bytes = dir_bytes(settings.models.snapshot_dir) \
            if settings.models.snapshot_dir.exists() else 0
        peak = r["peak_rss_bytes"][0]
        res = {"users": users, "events": n, "config": config, "guarantee": guarantee,
               "peak_rss_bytes": peak, "peak_rss_mib": peak / 2 ** 20,
               "state_dir_bytes": disk, "state_bytes_per_user": disk / users,
               "model_snapshot_bytes": model_bytes, **sizes_,
               "cache_users_setting": settings.cache_users,
               "rss_timeline": r["rss_timeline"][0],
               "events_per_s": r["events_per_s"], "ratio_to_raw": r["events_per_s"] / raw,
               "startup_s": r["startup_s"]}
        out[str(users)] = res
        rows.append([f"{users:,}", f"{n:,}", f"{peak / 2 ** 20:,.0f}",
                     f"{disk / users:,.0f}", f"{sizes_['mean_encoded_state_bytes']:,.0f}",
                     f"{sizes_['stored_users']:,}", fmt_rate(r["events_per_s"]),
                     f"{r['events_per_s'] / raw:.1%}"])
    table(f"memory, worker subprocess ({config}/{guarantee})",
          ["users", "events", "peak RSS MiB", "disk B/user", "state B/user (enc.)",
           "stored users", "events/s", "x raw"], rows)
    return out


def section_scale(bench: Bench, sim: Sim, raw: float, config: str,
                  guarantee: str) -> dict[str, Any]:
    """1 and 2 worker processes of one group: the workers start on empty input topics,
    and once every member holds its partitions the input is produced in one
    transaction, so neither run includes a rebalance."""
    out: dict[str, Any] = {}
    rows = []
    for workers in (1, 2):
        name = f"scale{workers}"
        env = bench.env(name, **config_env(config, guarantee))
        settings = bench.settings(env)
        log(f"  scale: {workers} worker process(es) ({config}/{guarantee}) ...")
        r = run_subprocesses(env, settings, len(sim), workers, bench.dir(name),
                             backfill=sim.records)
        r["ratio_to_raw"] = r["events_per_s"] / raw
        out[str(workers)] = r
    out["speedup"] = out["2"]["events_per_s"] / out["1"]["events_per_s"]
    out["speedup_steady"] = out["2"]["steady_events_per_s"] / out["1"]["steady_events_per_s"]
    for w in ("1", "2"):
        r = out[w]
        rows.append([w, fmt_rate(r["events_per_s"]), f"{r['us_per_event']:.1f}",
                     f"{r['ratio_to_raw']:.1%}", fmt_rate(r["steady_events_per_s"]),
                     f"{r['startup_s']:.1f}",
                     " / ".join(f"{b / 2 ** 20:,.0f}" for b in r["peak_rss_bytes"])])
    table(f"scale: worker subprocesses of one group, {bench.partitions} partitions, "
          f"{os.cpu_count()} cores shared with the broker ({config}/{guarantee}); speedup "
          f"{out['speedup']:.2f}x (10-90 %: {out['speedup_steady']:.2f}x)",
          ["workers", "events/s", "us/event", "x raw", "10-90 % ev/s", "group stable s",
           "peak RSS MiB"], rows)
    return out


# --------------------------------------------------------------------- targets
def lookup(results: dict[str, Any], path: str) -> float | None:
    cur: Any = results
    for part in path.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, dict):
        cur = cur.get("events_per_s")
    return float(cur) if isinstance(cur, (int, float)) else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out, rows = [], []
    for label, path, op, limit, unit in TARGETS:
        got = lookup(results, path)
        parent = path.rsplit("/", 1)[0] if unit != "events/s" else path
        ratio = lookup(results, parent + "/ratio_to_raw")
        holds = None if got is None or math.isnan(got) else (
            got >= limit if op == ">=" else got < limit)
        out.append({"target": label, "path": path, "op": op, "limit": limit, "unit": unit,
                    "measured": got, "ratio_to_raw": ratio, "holds": holds})
        shown = "not measured" if got is None else (
            f"{got / 2 ** 20:,.0f} MiB" if unit == "bytes" else f"{got:,.0f} {unit}")
        lim = f"{limit / 2 ** 20:,.0f} MiB" if unit == "bytes" else f"{limit:,} {unit}"
        rows.append([label, f"{op} {lim}", shown, "" if ratio is None else f"{ratio:.1%}",
                     "-" if holds is None else ("yes" if holds else "NO")])
    table("targets (per worker process; x raw: the run's events/s over the raw limit)",
          ["target", "limit", "measured", "x raw", "holds"], rows)
    return out


# ----------------------------------------------------------------- regression
def quick_ratios(results: dict[str, Any]) -> dict[str, float]:
    tp = results["sections"].get("throughput", {})
    return {f"{c}/{g}": tp[c][g]["ratio_to_raw"] for c, g in QUICK_RUNS
            if c in tp and g in tp[c]}


def compare_baseline(ratios: dict[str, float], update: bool, meta: dict[str, Any]) -> int:
    if update:
        BASELINE.write_text(json.dumps({
            "ratios": {k: round(v, 4) for k, v in ratios.items()},
            "tolerance": REGRESSION_TOLERANCE, "measured": meta,
            "note": "worker events/s divided by raw consume+orjson events/s in the same "
                    "run (python bench/suite.py --quick --update-baseline)"},
            indent=2) + "\n")
        log(f"\nbaseline written to {BASELINE}")
        return 0
    if not BASELINE.is_file():
        log(f"\nno baseline at {BASELINE}; run with --update-baseline to create it")
        return 0
    base = json.loads(BASELINE.read_text())["ratios"]
    rows, failed = [], False
    for key in sorted(set(base) - set(ratios)):
        rows.append([key, "-", f"{base[key]:.1%}", "-", "NOT MEASURED"])
        failed = True
    for key, got in ratios.items():
        want = base.get(key)
        if want is None:
            rows.append([key, f"{got:.1%}", "-", "-", "no baseline"])
            continue
        floor = want * (1 - REGRESSION_TOLERANCE)
        ok = got >= floor
        failed |= not ok
        rows.append([key, f"{got:.1%}", f"{want:.1%}", f"{got / want - 1:+.0%}",
                     "OK" if ok else "REGRESSION"])
    table(f"regression guard: worker / raw vs {BASELINE.name} (fails below "
          f"{1 - REGRESSION_TOLERANCE:.0%} of baseline)",
          ["run", "ratio", "baseline", "change", "verdict"], rows)
    log("\nREGRESSION" if failed else "\nOK")
    return 1 if failed else 0


def _finite(obj: Any) -> Any:
    """NaN/inf (a figure that could not be measured) become null: strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# ------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="regression guard: 100k events of 10k users, raw + 2 worker runs")
    ap.add_argument("--update-baseline", action="store_true",
                    help="with --quick: write bench/baseline.json from this run")
    ap.add_argument("--only", default="", help=f"comma-separated sections of {SECTIONS}")
    ap.add_argument("--events", type=int, default=None,
                    help="events of the shared input (default 1,000,000; quick 100,000)")
    ap.add_argument("--users", type=int, default=None,
                    help="users of the shared input (default 100,000; quick 10,000)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--loads", default="2000,10000", help="latency: offered events/s")
    ap.add_argument("--latency-seconds", type=float, default=25.0)
    ap.add_argument("--latency-config", default="rules", choices=sorted(CONFIGS))
    ap.add_argument("--memory-users", default="100000,1000000",
                    help="memory: user counts (inputs: the shared input for its user "
                         "count, else --memory-events-per-user per user)")
    ap.add_argument("--memory-events-per-user", type=int, default=2)
    ap.add_argument("--memory-config", default="full", choices=sorted(CONFIGS))
    ap.add_argument("--scale-config", default="rules:at_least_once")
    ap.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                    help="extra worker setting for every run (e.g. "
                         "SEGSTREAM_COMMIT_INTERVAL_MS=100)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON results (default bench/results/latest.json, quick: "
                         "bench/results/quick.json)")
    ap.add_argument("--keep", action="store_true", help="keep topics and work directory")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    check_config_names()
    overrides = {}
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep or not k.startswith("SEGSTREAM_"):
            raise SystemExit(f"--set {item!r}: use SEGSTREAM_NAME=value")
        overrides[k] = v
    scale_config = tuple(args.scale_config.split(":"))
    if len(scale_config) != 2 or scale_config[0] not in CONFIGS or \
            scale_config[1] not in GUARANTEES:
        raise SystemExit(f"--scale-config {args.scale_config!r}: use CONFIG:GUARANTEE with "
                         f"CONFIG in {sorted(CONFIGS)} and GUARANTEE in {GUARANTEES}")
    if args.quick:
        sections = ["raw", "throughput"]
        events, users = args.events or 100_000, args.users or 10_000
        runs = list(QUICK_RUNS)
    else:
        sections = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise SystemExit(f"--only: unknown sections {sorted(unknown)}; use {SECTIONS}")
        events, users = args.events or 1_000_000, args.users or 100_000
        runs = [(c, g) for c in ("rules", "models", "text") for g in GUARANTEES]
    out_path = args.out or Path(__file__).resolve().parent / "results" / (
        "quick.json" if args.quick else "latest.json")

    machine = machine_info()
    log(f"segstream bench: {'quick' if args.quick else 'suite'} {sections}; "
        f"{machine['cpu_count']} cpus, load {machine['load_average_at_start'][0]:.2f}, "
        f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']} / "
        f"librdkafka {machine['librdkafka']}")
    if overrides:
        log(f"worker overrides: {overrides}")
    results: dict[str, Any] = {"machine": machine, "params": {
        "quick": args.quick, "events": events, "users": users, "partitions": args.partitions,
        "sections": sections, "overrides": overrides}, "sections": {}}
    bench = Bench(args.partitions, overrides, keep=args.keep)
    status = 0
    try:
        logs.configure("ERROR", True)
        sim = simulate(users, events, seed=11)
        log(f"input: {sim.describe()}")
        results["params"]["input"] = sim.describe()
        need_shared = any(s in sections for s in ("raw", "throughput", "memory", "scale"))
        inputs = "in"
        n = len(sim)
        raw_rate = float("nan")
        if need_shared or "replay" in sections or "latency" in sections:
            in_settings = bench.settings(bench.env(inputs))
            n, secs = produce_all(in_settings, sim.records)
            log(f"produced {n:,} events to {args.partitions}-partition topics in {secs:.1f}s "
                f"({n / secs:,.0f}/s)")
            # median of 3 passes: one pass over a small input lasts a fraction of a
            # second, and every ratio of the run divides by it
            passes = [raw_limit(in_settings, n, f"{bench.run}-raw{i}") for i in range(3)]
            raw = sorted(passes, key=lambda r: r["events_per_s"])[1]
            raw["passes_events_per_s"] = [round(r["events_per_s"]) for r in passes]
            raw_rate = raw["events_per_s"]
            results["sections"]["raw"] = raw
            table("raw limit (same topics, same run; median of 3 passes)",
                  ["reader", "events/s", "us/event", "passes"],
                  [["consume(1000) + orjson.loads", fmt_rate(raw_rate),
                    f"{raw['us_per_event']:.2f}",
                    " / ".join(fmt_rate(r["events_per_s"]) for r in passes)]])
        steps: dict[str, Callable[[], Any]] = {
            "replay": lambda: section_replay(bench, sim, raw_rate),
            "throughput": lambda: section_throughput(bench, inputs, n, raw_rate, runs),
            "latency": lambda: section_latency(
                bench, sim, raw_rate, [int(x) for x in args.loads.split(",")],
                args.latency_seconds, args.latency_config),
            "memory": lambda: section_memory(
                bench, [(u, n if u == users else args.memory_events_per_user * u)
                        for u in (int(x) for x in args.memory_users.split(","))],
                {users: (inputs, n)}, raw_rate, args.memory_config, "exactly_once"),
            "scale": lambda: section_scale(bench, sim, raw_rate, *scale_config),
        }
        for name in sections:
            if name == "raw":
                continue
            log(f"\n[{name}]")
            t = time.perf_counter()
            try:
                results["sections"][name] = steps[name]()
            except (SystemExit, Exception) as exc:  # one failed section keeps the others
                detail = str(exc) if isinstance(exc, SystemExit) else \
                    "".join(traceback.format_exception(exc)[-6:])
                log(f"  {name} FAILED: {detail}")
                results["sections"][name] = {"error": detail}
                status = 2
            results["sections"].setdefault(name, {})["section_seconds"] = round(
                time.perf_counter() - t, 1)
        if not args.quick:
            results["targets"] = targets(results["sections"])
        else:
            ratios = quick_ratios(results)
            results["quick_ratios"] = ratios
            guard = compare_baseline(ratios, args.update_baseline, {
                "at": machine["started_at"], "events": events, "users": users,
                "raw_events_per_s": round(raw_rate),
                "load_average": machine["load_average_at_start"]})
            status = status or guard
    finally:
        bench.cleanup()
        results["wall_seconds"] = round(time.perf_counter() - wall, 1)
        results["machine"]["load_average_at_end"] = os.getloadavg()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(_finite(results), indent=2, default=str) + "\n")
        log(f"\nresults: {out_path} (wall {results['wall_seconds']:.0f}s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
