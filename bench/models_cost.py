"""Cost of the online models per event, against the rules-only pipeline in the same run.

Stages per event, as the worker runs them: feature update, feature vector, (models:
``suite.tick`` debounced per user, label bookkeeping on the user's pending list, batched
``suite.learn`` of matured labels), segment policy. The rules-only pipeline is the same
loop without the model steps. Then the worker's processor as a whole, users' timers,
decoding and change records included (``segstream replay`` of the same events, rules
alone against the models with their policy). Also prints the per-call cost of a
debounced tick, a rescoring tick and learning one example, and the snapshot size and
save/load times.

    .venv/bin/python bench/models_cost.py [--events 100000] [--users 2000]
        [--debounce S] [--label-gap S] [--materiality F]
        [--variant NAME:VAR=VALUE,VAR=VALUE ...]

A ``--variant`` adds a models pipeline with those settings to the whole-processor part,
for example ``once:SEGSTREAM_MODEL_DEBOUNCE_S=99999999,SEGSTREAM_MODEL_MAX_STALENESS_S=
99999999`` (every user scored once, never again): what the models cost besides scoring.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import CONFIGS, simulate  # noqa: E402

from models.learn.config import ModelConfig  # noqa: E402
from models.learn.inputs import compact  # noqa: E402
from models.learn.labels import add_snapshot, on_order, on_watermark  # noqa: E402
from models.learn.snapshot import read, save  # noqa: E402
from models.learn.suite import ModelSuite  # noqa: E402
from streams.config import Settings  # noqa: E402
from streams.contracts.decode import EventDecoder  # noqa: E402
from streams.contracts.events import OrderEvent  # noqa: E402
from streams.features.state import UserState  # noqa: E402
from streams.features.update import update  # noqa: E402
from streams.features.vector import vector  # noqa: E402
from streams.runtime.app import build_models, build_processor  # noqa: E402
from streams.runtime.replay import replay as replay_file  # noqa: E402

LEARN_BATCH = 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--debounce", type=int, default=None,
                    help="seconds of event time (default: SEGSTREAM_MODEL_DEBOUNCE_S default)")
    ap.add_argument("--materiality", type=float, default=None,
                    help="relative change that triggers a rescoring (default: config)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept")
    ap.add_argument("--label-gap", type=int, default=None,
                    help="seconds between label snapshots of a user (default: config default)")
    ap.add_argument("--variant", action="append", default=[], type=_variant,
                    help="NAME:VAR=VALUE,...: another models pipeline in the whole-processor "
                         "part, with these settings")
    args = ap.parse_args(argv)
    logging.getLogger("models.learn.suite").setLevel(logging.ERROR)
    end_ms = 1_767_225_600_000
    # the generator's own events when the users' volume allows, else tiled (bench/common.py)
    lines = [value for _, _, value in simulate(args.users, args.events, seed=5,
                                               end_ms=end_ms).records]
    decoder = EventDecoder(max_bytes=1 << 24, min_ts_ms=0, max_future_skew_ms=1 << 50,
                           topic_types={})
    events = [decoder.decode_value("sim", line, end_ms) for line in lines]
    n = len(events)
    policy = build_processor(Settings.from_env({})).policy
    cfg = ModelConfig()
    if args.debounce is not None:
        cfg = replace(cfg, debounce_s=args.debounce)
    if args.materiality is not None:
        cfg = replace(cfg, materiality=args.materiality)
    if args.label_gap is not None:
        cfg = replace(cfg, snapshot_gap_s=args.label_gap)
    print(f"{n:,} simulated events, {args.users:,} users; debounce {cfg.debounce_s}s, label "
          f"gap {cfg.snapshot_gap_s}s, materiality {cfg.materiality}, horizon {cfg.horizon_days}d")

    def rules_only() -> None:
        states: dict[str, UserState] = {}
        for ev in events:
            st = states[ev.user_id] = update(states.get(ev.user_id), ev)
            f = vector(st)
            policy.evaluate(st.segments, st.exited, f, st.last_ts)

    suite = ModelSuite(cfg)
    suite.warm_up()  # the worker compiles the kernels at start, before the first event
    counts = {"rescored": 0, "learned": 0}

    def with_models() -> None:
        nonlocal suite
        suite = ModelSuite(cfg)
        counts.update(rescored=0, learned=0)
        states: dict[str, UserState] = {}
        memos: dict[str, list[Any]] = {}
        pending: dict[str, list[list[Any]]] = {}
        batch: list[Any] = []
        for ev in events:
            uid = ev.user_id
            st = states[uid] = update(states.get(uid), ev)
            as_of = st.last_ts
            f = vector(st, as_of)
            s = suite.tick(uid, f, as_of, memos.get(uid))
            memos[uid] = s.memo
            counts["rescored"] += s.rescored
            p = pending.get(uid, [])
            if isinstance(ev, OrderEvent) and ev.status == "placed":
                p, matured = on_order(p, as_of, ev.total, cfg)
                batch += matured
            p, matured = on_watermark(p, as_of, cfg)
            batch += matured
            if s.rescored:
                p = add_snapshot(p, as_of, s.memo[6:], cfg)
            pending[uid] = p
            if len(batch) >= LEARN_BATCH:
                suite.learn(batch, at_ms=as_of)
                counts["learned"] += len(batch)
                batch = []
            f.update(s.features())
            policy.evaluate(st.segments, st.exited, f, as_of)

    # Alternate the two pipelines and keep each one's best round: the machine is shared,
    # and a burst of load elsewhere must not land on one side only.
    base = models = float("inf")
    for _ in range(args.rounds):
        t = time.perf_counter()
        rules_only()
        base = min(base, time.perf_counter() - t)
        t = time.perf_counter()
        with_models()
        models = min(models, time.perf_counter() - t)
    print(f"rules only   (update+vector+rules)          {base / n * 1e6:7.2f} us/event  "
          f"{n / base:9,.0f} events/s")
    print(f"with models  (+tick+labels+learn)           {models / n * 1e6:7.2f} us/event  "
          f"{n / models:9,.0f} events/s")
    print(f"models add {(models - base) / n * 1e6:.2f} us/event: throughput "
          f"{base / models:.1%} of rules-only; rescored {counts['rescored']:,} ticks "
          f"({counts['rescored'] / n:.1%} of events), learned {counts['learned']:,} examples")

    _whole_processor(lines, args.rounds, dict(args.variant))

    # Per-call costs on realistic inputs.
    finals = [vector(st) for st in _final_states(events)]
    xs = [compact(f) for f in finals]
    reps = max(1, 20_000 // len(finals))
    memos = [suite.score(x, 0, None).memo for x in xs]
    t = time.perf_counter()
    for _ in range(reps):
        for f, m in zip(finals, memos, strict=True):
            suite.tick("u", f, 1000, m)
    debounced = (time.perf_counter() - t) / (reps * len(finals))
    t = time.perf_counter()
    for x in xs:
        suite.score(x, 0, None)
    scored = (time.perf_counter() - t) / len(xs)
    examples = [(x, 1, 10.0) for x in xs]
    t = time.perf_counter()
    suite.learn(examples)
    learned = (time.perf_counter() - t) / len(examples)
    print(f"per call: tick debounced {debounced * 1e6:.2f} us, tick rescoring (churn + value "
          f"+ cluster) {scored * 1e6:.1f} us, learn one example (churn + value, "
          f"test-then-train) {learned * 1e6:.1f} us")

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = save(suite, Path(tmp), {"shop.orders/0": n})
        saved = time.perf_counter() - t
        t = time.perf_counter()
        read(path)
        loaded = time.perf_counter() - t
        print(f"snapshot {path.stat().st_size:,} bytes, save {saved * 1e3:.1f} ms, "
              f"load (verify + unpickle) {loaded * 1e3:.1f} ms")
    return 0


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, assignments = text.partition(":")
    pairs = [a.partition("=") for a in assignments.split(",") if a]
    if not sep or not name or not pairs or any(not k or not eq for k, eq, _ in pairs):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:VAR=VALUE[,VAR=VALUE...], e.g. "
            "weekly:SEGSTREAM_MODEL_DEBOUNCE_S=604800")
    return name, {k: v for k, _, v in pairs}


def _whole_processor(lines: list[bytes], rounds: int,
                     variants: dict[str, dict[str, str]]) -> None:
    """The worker's processor as a whole, users' timers included: ``segstream replay``
    of the same events with the rules alone and with the models (the packaged policies,
    six partitions' event-time clocks), alternating rounds, best of each kept; each
    variant is the models pipeline with its settings."""
    pipelines = {"rules": CONFIGS["rules"], "models": CONFIGS["models"],
                 **{name: {**CONFIGS["models"], **env} for name, env in variants.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        best: dict[str, float] = {}
        reports: dict[str, Any] = {}
        for _ in range(rounds):
            for config, env in pipelines.items():
                settings = Settings.from_env(env)
                processor = build_processor(settings, build_models(settings))
                processor.warm_up()
                t = time.perf_counter()
                report = replay_file(path, Path(tmp) / config, processor=processor,
                                decoder=EventDecoder.from_settings(settings),
                                assume_sorted=True, finalize=False, partitions=6)
                took = time.perf_counter() - t
                if took < best.get(config, float("inf")):
                    best[config], reports[config] = took, report
    for config in pipelines:
        r = reports[config]
        scored = r.models["scored"]["churn"] if r.models else 0
        print(f"whole processor, timers included, {config:<6} {best[config] / r.events * 1e6:7.2f}"
              f" us/event  {r.events / best[config]:9,.0f} events/s; {r.changes:,} changes, "
              f"{r.alerts:,} churn alerts, {scored:,} scorings")
    for config in pipelines:
        if config != "rules":
            print(f"whole processor: {config} at {best['rules'] / best[config]:.1%} of "
                  "rules-only throughput (segstream replay; decoding and change records "
                  "included)")


def _final_states(events: list[Any]) -> list[UserState]:
    states: dict[str, UserState] = {}
    for ev in events:
        states[ev.user_id] = update(states.get(ev.user_id), ev)
    return list(states.values())


if __name__ == "__main__":
    raise SystemExit(main())
