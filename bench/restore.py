"""State restore time from the changelog, per 100k users of state.

1. Simulate many users with few events each (default 100k users, their first 3 events)
   and produce them to fresh input topics.
2. A worker processes them all (writing every user's state to the changelog topic), then
   stops.
3. A fresh worker in the same group, with an empty state directory, is assigned every
   partition, finds the group's offsets at the end of the input and so restores the
   whole state from the changelog. Its ``partition restored`` log lines (partition,
   records, seconds) give the restore time, printed per partition, in total, and scaled
   to 100k users.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/restore.py [--users N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from eos import (
    Committed,
    drop_topics,
    produce_simulation,
    run_env,
    settings_of,
    start_worker,
    stop_worker,
)


def restored_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_bytes().splitlines():
        if line.startswith(b"{"):
            rec = orjson.loads(line)
            if rec.get("msg") == "partition restored":
                out.append(rec)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--events-per-user", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    run = f"restore{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="segstream-restore-"))
    env = run_env(run, work / "state-a", args.partitions)
    settings = settings_of(env)
    if not hasattr(settings.topics, "changelog"):
        raise SystemExit("this checkout has no state changelog topic: nothing to restore from")
    try:
        t = time.perf_counter()
        n, users = produce_simulation(settings, args.users, 0, seed=13,
                                      per_user=args.events_per_user, days=1)
        print(f"produced {n} events for {users} users in {time.perf_counter() - t:.1f}s")

        # 2. build the state (and its changelog)
        log_a = work / "build.log"
        probe = Committed(settings)
        proc = start_worker(env, log_a)
        t = time.perf_counter()
        try:
            while probe.total() < n:
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log_a.read_text()[-3000:]}")
                time.sleep(0.1)
            stop_worker(proc, log_a)
        finally:
            if proc.poll() is None:
                proc.kill()
            probe.close()
        print(f"state built by one worker in {time.perf_counter() - t:.1f}s")

        # 3. a fresh worker, empty state dir: restore everything from the changelog
        log_b = work / "restore.log"
        env_b = {**env, "SEGSTREAM_STATE_DIR": str(work / "state-b")}
        started = time.time()
        proc = start_worker(env_b, log_b)
        deadline = time.monotonic() + args.timeout
        try:
            while len({r["partition"] for r in restored_lines(log_b)}) < args.partitions:
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log_b.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"no 'partition restored' for every partition after "
                                     f"{args.timeout}s:\n{log_b.read_text()[-3000:]}")
                time.sleep(0.2)
            stop_worker(proc, log_b)
        finally:
            if proc.poll() is None:
                proc.kill()
        lines = restored_lines(log_b)
    finally:
        drop_topics([settings])
        shutil.rmtree(work, ignore_errors=True)

    records = sum(r["records"] for r in lines)
    busy = sum(r["seconds"] for r in lines)
    last = max(datetime.fromisoformat(r["ts"]).timestamp() for r in lines)
    wall = last - started
    for r in sorted(lines, key=lambda r: r["partition"]):
        print(f"  partition {r['partition']}: {r['records']} records in {r['seconds']:.2f}s")
    scale = 100_000 / users
    print(f"restored {records} changelog records ({users} users) in {busy:.2f}s of restore "
          f"work, {wall:.2f}s from process start to the last partition restored")
    print(f"restore time per 100k users: {busy * scale:.2f}s (restore work), "
          f"{wall * scale:.2f}s (wall, incl. start-up and group join); "
          f"{records / busy if busy else float('nan'):,.0f} records/s")


if __name__ == "__main__":
    main()
