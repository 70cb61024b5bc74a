"""Worker throughput over the real broker, against raw consume throughput in the same run.

A single-purpose slice of ``bench/suite.py`` (which runs every configuration), kept for
quick before/after comparisons of one configuration:

1. Simulate N events (default 200k for 2000 users) and produce them to fresh topics.
2. Baseline: a bare confluent-kafka consumer, ``consume(1000)`` + ``orjson.loads`` of
   every value, reading all N events (what any Python consumer must pay).
3. The segstream worker (the production code path, in-process) over the same topics with
   its own group and state: decode, validate, features, segment rules, outputs, stores
   and commits. Measured from the first consumed batch until all N are committed, so the
   group join is not counted (it is printed separately).

The worker runs with the process environment's settings (exactly-once, text analysis on,
models off by default); ``--config rules|models|text|full`` and ``--guarantee`` select a
configuration of the suite instead.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/throughput.py [--events N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONFIGS, GUARANTEES, Bench, produce_all, raw_limit, run_inprocess, simulate

from streams import logs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--config", choices=sorted(CONFIGS), default=None)
    ap.add_argument("--guarantee", choices=GUARANTEES, default=None)
    args = ap.parse_args()

    logs.configure("WARNING", True)
    bench = Bench(args.partitions)
    try:
        extra = dict(CONFIGS[args.config]) if args.config else {}
        if args.guarantee:
            extra["SEGSTREAM_PROCESSING_GUARANTEE"] = args.guarantee
        settings = bench.settings(bench.env("run", **extra))

        # 1. produce
        sim = simulate(args.users, args.events, seed=11)
        n, produce_s = produce_all(settings, sim.records)
        print(f"produced {n} events for {args.users} users in {produce_s:.1f}s "
              f"({n / produce_s:,.0f}/s); {sim.method}")

        # 2. baseline: raw consume + decode
        raw = raw_limit(settings, n, f"{bench.run}-raw")
        print(f"baseline raw consume+decode: {raw['events']} in {raw['seconds']:.2f}s = "
              f"{raw['events_per_s']:,.0f} events/s")

        # 3. the worker
        r = run_inprocess(settings, n)
        print(f"group join + restore: {r['join_s']:.2f}s")
        print(f"segstream worker ({settings.processing_guarantee}, text "
              f"{settings.text_analyzer}, models {'on' if settings.models.enabled else 'off'})"
              f": {r['events']} in {r['seconds']:.2f}s = {r['events_per_s']:,.0f} events/s "
              f"({r['us_per_event']:.1f} us/event), {r['segment_changes']} segment changes, "
              f"{r['dead_letters']} dead letters, {r['batches']} batches")
        print(f"worker / raw consume: {r['events_per_s'] / raw['events_per_s']:.1%}")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
