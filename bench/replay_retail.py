"""Replay throughput of `segstream replay` over the UCI Online Retail file.

Converts the CSV to order events once (timed separately), then runs the embedded
replay twice: sorted-input streaming mode and the default mode that sorts by event
time first. Baseline in the same run: reading and orjson-decoding the JSONL lines alone.

Usage: python bench/replay_retail.py [path/to/online_retail_uci.csv.gz]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson

from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.runtime.app import build_processor
from streams.runtime.replay import replay
from streams.sim.retail import load_retail_orders, write_jsonl

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail_uci.csv.gz"


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    tmp = Path(tempfile.mkdtemp(prefix="segstream-retail-"))
    t = time.perf_counter()
    events, stats = load_retail_orders(src)
    jsonl = tmp / "retail.jsonl"
    write_jsonl(events, jsonl)
    print(f"converted {src.name}: {len(events)} order events in {time.perf_counter() - t:.2f}s")
    print(f"  {stats}")

    t = time.perf_counter()
    with jsonl.open("rb") as fh:
        n = sum(1 for line in fh if orjson.loads(line))
    base = time.perf_counter() - t
    print(f"baseline read+decode: {n} lines in {base:.2f}s = {n / base:,.0f} lines/s")

    settings = Settings.from_env({})
    for assume_sorted in (True, False):
        report = replay(jsonl, tmp / f"out-{assume_sorted}", processor=build_processor(settings),
                        decoder=EventDecoder.from_settings(settings), assume_sorted=assume_sorted)
        mode = "streaming (--sorted)" if assume_sorted else "sorting (default)"
        print(f"replay {mode}: {report.lines} events in {report.seconds:.2f}s = "
              f"{report.events_per_second:,.0f} events/s; {report.users} users, "
              f"{report.changes} changes, dead letters {dict(report.dead_letters)}")
    print("final segment sizes:", report.segment_sizes)
    print(f"outputs in {tmp}")


if __name__ == "__main__":
    main()
