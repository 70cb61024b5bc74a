"""Kill the worker with SIGKILL mid-run and restart it: the final segments, and the set
of segment changes, equal those of an uninterrupted run.

The events are on the broker before the worker starts (a backfill), so the worker's
event-time alignment of the three input topics merges each partition's events in
(event time, type) order, which is exactly the order the in-process replay uses. The
replay is therefore the uninterrupted reference.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.contracts.decode import EventDecoder
from streams.runtime.app import build_processor
from streams.runtime.replay import replay
from streams.sim.generator import generate

from .kafka_helpers import GroupProgress, env_of, isolated_settings, produce, read_all, wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_worker(settings, log: Path, **extra: str) -> subprocess.Popen:
    env = {**os.environ, **env_of(settings), "SEGSTREAM_LOG_LEVEL": "INFO", **extra}
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_kill_and_restart_gives_the_same_result_as_an_uninterrupted_run(
        kafka_bootstrap, test_id, tmp_path):
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state",
                          SEGSTREAM_BATCH_SIZE="20", SEGSTREAM_COMMIT_INTERVAL_MS="0",
                          SEGSTREAM_SESSION_TIMEOUT_MS="6000")
    sim = generate(200, 15_000, seed=3, end_ms=int(time.time() * 1000) - 60_000, days=90)
    events = list(sim.events())
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    topic = {"click": s.topics.clicks, "order": s.topics.orders, "review": s.topics.reviews}
    produce(s, ((topic[e["type"]], e["user_id"].encode(), orjson.dumps(e)) for e in events))
    total = len(events)

    log = tmp_path / "worker.log"
    progress = GroupProgress(s)
    kills: list[int] = []
    # SIGKILL shortly after each restarted worker has committed another tenth of the input
    for _ in range(3):
        proc = _start_worker(s, log)
        last = max(progress.total(), 0)
        wait_until(lambda last=last: progress.total() >= last + total // 10, 120,
                   interval=0.02, what="progress after restart")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills.append(progress.total())
    assert all(k < total for k in kills), f"worker finished before being killed: {kills}"

    port = _free_port()
    proc = _start_worker(s, log, SEGSTREAM_METRICS_PORT=str(port))
    wait_until(lambda: progress.total() == total, 180, what="all input committed")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert b"segstream_events_consumed_total{" in metrics
    assert b'segstream_dlq_total' in metrics and b"segstream_commit_seconds_bucket" in metrics
    # the loop's processing time is counted (with the commit time: how busy it is)
    batches = re.search(rb"^segstream_batch_process_seconds_count (\S+)$", metrics, re.M)
    assert batches is not None and float(batches.group(1)) > 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]
    progress.close()

    # the uninterrupted reference: the same processing in-process, without Kafka
    ref = replay(jsonl, tmp_path / "ref", processor=build_processor(s),
                 decoder=EventDecoder.from_settings(s), finalize=False,
                 partitions=s.partitions)
    ref_changes = [orjson.loads(line) for line in (tmp_path / "ref" / "changes.jsonl").open("rb")]
    ref_segments = {r["user_id"]: r["segments"] for r in
                    map(orjson.loads, (tmp_path / "ref" / "snapshot.jsonl").open("rb"))}
    assert ref.changes > 100 and sum(ref.dead_letters.values()) == 0

    got = [orjson.loads(m.value()) for m in read_all(s, s.topics.changes)]
    unique = {c["event_id"]: c for c in got}
    key = lambda c: (c["user_id"], c["segment"], c["change"], c["at_ms"])  # noqa: E731
    assert sorted(map(key, unique.values())) == sorted(map(key, ref_changes))
    # at-least-once: repeats are exact copies with the same id, never new decisions
    assert len(got) - len(unique) <= 3 * 20 * 4
    print(f"\nkill/restart: {total} events in, SIGKILL at committed={kills}, "
          f"{len(unique)} distinct changes out (reference {len(ref_changes)}), "
          f"{len(got) - len(unique)} redelivered copies, 0 missing")

    current: dict[str, list[str]] = {}
    for m in read_all(s, s.topics.current):
        current[m.key().decode()] = sorted(orjson.loads(m.value())["segments"])
    for user, segments in ref_segments.items():
        assert current.get(user, []) == segments, user
    assert read_all(s, s.topics.dlq) == []
    # and the personas the simulator drew land in their segments
    target = {"bargain_hunter": "price_sensitive", "loyal_big_spender": "vip",
              "window_shopper": "high_activity", "churning_customer": "dormant",
              "new_customer": "new_customer", "cart_abandoner": "cart_abandoner"}
    for persona, segment in target.items():
        users = [u for u, p in sim.truth.items() if p == persona]
        hits = sum(segment in current.get(u, []) for u in users)
        assert users and hits >= 0.8 * len(users), (persona, hits, len(users))
    # the restarts resumed from stored positions, they did not start over
    assert log.read_text().count("partitions assigned") >= 4
    assert '"msg":"worker stopped"' in log.read_text()
