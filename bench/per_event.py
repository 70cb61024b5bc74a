"""Per-event cost of each processing stage, in-process, on simulated traffic.

Baseline in the same run: orjson parsing alone. Then each stage the worker runs per event:
decode+validate, feature update, feature vector, segment policy, and the whole processor.

Usage: python bench/per_event.py [--events N]
"""

from __future__ import annotations

import argparse
import time

import orjson

from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.features.update import update
from streams.features.vector import vector
from streams.runtime.app import build_processor
from streams.runtime.processor import Source
from streams.sim.generator import generate


def timed(label: str, n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    us = (time.perf_counter() - t) / n * 1e6
    print(f"{label:<34} {us:7.2f} us/event")
    return us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=2_000)
    args = ap.parse_args()
    sim = generate(args.users, args.events, seed=5, end_ms=int(time.time() * 1000) - 60_000)
    raw = [(ev["user_id"].encode(), orjson.dumps(ev)) for ev in sim.events()]
    n = len(raw)
    settings = Settings.from_env({})
    decoder = EventDecoder.from_settings(settings)
    processor = build_processor(settings)
    now = int(time.time() * 1000)
    print(f"{n} simulated events, {args.users} users")

    base = timed("baseline: orjson.loads", n, lambda: [orjson.loads(v) for _, v in raw])
    events = []
    timed("decode + validate", n,
          lambda: events.extend(decoder.decode("", k, v, now) for k, v in raw))
    states: dict = {}

    def do_update() -> None:
        for ev in events:
            states[ev.user_id] = update(states.get(ev.user_id), ev, processor.feature_config)

    timed("feature update", n, do_update)
    # vector and policy at each user's final state (same shape of work as per event)
    finals = list(states.values())
    reps = max(1, n // len(finals))
    vec_us = timed("feature vector", len(finals) * reps,
                   lambda: [vector(s) for _ in range(reps) for s in finals])
    vecs = [vector(s) for s in finals]
    policy = processor.policy

    def do_policy() -> None:
        for _ in range(reps):
            for v in vecs:
                policy.evaluate({}, {}, v, 0)

    timed("segment policy (6 rules)", len(vecs) * reps, do_policy)
    states.clear()

    def do_all() -> None:
        for i, ev in enumerate(events):
            r = processor.process(states.get(ev.user_id), ev, Source("t", 0, i))
            states[ev.user_id] = r.state

    total = timed("whole processor (update+vector+rules)", n, do_all)
    print(f"processor / orjson baseline: {total / base:.1f}x; vector share "
          f"{vec_us / total:.0%}")


if __name__ == "__main__":
    main()
