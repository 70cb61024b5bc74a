"""Embedded mode: the worker's processing over a JSONL file, in-process, without Kafka.

Used for backfills, offline evaluation and debugging. Events are validated by the same
decoder and folded by the same :class:`Processor` as in the worker; they are applied in
event-time order (stable for equal timestamps), and invalid lines are written to
``dlq.jsonl`` with their line number, reason and original text, never dropped.
"""

from __future__ import annotations

import base64
import heapq
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from streams.contracts.decode import EventDecoder
from streams.contracts.events import Event
from streams.exceptions import InvalidEvent
from streams.features.state import UserState
from streams.features.vector import vector
from streams.runtime.processor import Processor, Source, iso

_TYPE_RANK = {"click": 0, "order": 1, "review": 2}


@dataclass
class ReplayReport:
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    alerts: int = 0
    models: dict[str, Any] | None = None
    dead_letters: Counter[str] = field(default_factory=Counter)
    changes: int = 0
    users: int = 0
    segment_sizes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "events": self.events, "duplicates": self.duplicates,
                "churn_alerts": self.alerts, "models": self.models,
                "dead_letters": dict(self.dead_letters), "changes": self.changes,
                "users": self.users, "segment_sizes": self.segment_sizes,
                "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second)}


def replay(
    path: Path,
    out_dir: Path,
    *,
    processor: Processor,
    decoder: EventDecoder,
    assume_sorted: bool = False,
    finalize: bool = True,
    partitions: int = 0,
) -> ReplayReport:
    """Process ``path`` and write ``changes.jsonl``, ``snapshot.jsonl``, ``dlq.jsonl`` and
    ``summary.json`` to ``out_dir``.

    Users' timers fire as event time passes, as in the worker. The worker's event time
    advances per partition; with ``partitions`` > 0 the replay does the same, placing users
    as Kafka's default (CRC32 ``consistent``) partitioner does, so it reproduces a worker
    run exactly; with 0 all users share one clock.

    With ``finalize`` every user is re-evaluated as of the last event time in the file,
    so the snapshot says who is dormant or no longer new *at the end of the data*, not
    at each user's own last event.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ReplayReport()
    started = time.perf_counter()
    states: dict[str, UserState] = {}
    name = path.name
    now_ms = int(time.time() * 1000)
    with (out_dir / "dlq.jsonl").open("wb") as dlq, \
         (out_dir / "changes.jsonl").open("wb") as changes:
        events = _decoded(path, decoder, now_ms, dlq, report)
        if not assume_sorted:
            # Same tie-break as the worker's topic alignment: click, order, review.
            events = iter(sorted(events, key=lambda item: (item[1].ts_ms,
                                                           _TYPE_RANK[item[1].type], item[0])))
        timers: dict[int, list[tuple[int, str]]] = {}
        armed: dict[str, int] = {}  # the due time last pushed per user (states mutate)
        models = processor.models
        matured: list[Any] = []

        def learn(at_ms: int, final: bool = False) -> None:
            # test-then-train in batches, as the worker does per batch
            if models is not None and matured and (final or len(matured) >= 256):
                models.learn(list(matured), at_ms=at_ms)
                matured.clear()
        for lineno, event in events:
            part = zlib.crc32(event.user_id.encode()) % partitions if partitions else 0
            heap = timers.setdefault(part, [])
            while heap and heap[0][0] < event.ts_ms:
                due, user = heapq.heappop(heap)
                st = states[user]
                if st.timer_due != due:
                    continue  # re-armed since
                res = processor.fire_timer(user, st, due)
                matured.extend(res.matured)
                report.alerts += len(res.alerts)
                if res.state.timer_due and armed.get(user) != res.state.timer_due:
                    armed[user] = res.state.timer_due
                    heapq.heappush(heap, (res.state.timer_due, user))
                for ch in res.changes:
                    changes.write(orjson.dumps(ch) + b"\n")
                    report.changes += 1
            try:
                result = processor.process(states.get(event.user_id), event,
                                           Source(name, 0, lineno))
            except InvalidEvent as exc:
                _write_dlq(dlq, lineno, exc, msgspec.json.encode(event), report)
                continue
            if result.duplicate:
                report.duplicates += 1
                continue
            matured.extend(result.matured)
            report.alerts += len(result.alerts)
            learn(event.ts_ms)
            states[event.user_id] = result.state
            due = result.state.timer_due
            if due and armed.get(event.user_id) != due:
                armed[event.user_id] = due
                heapq.heappush(heap, (due, event.user_id))
            report.events += 1
            for ch in result.changes:
                changes.write(orjson.dumps(ch) + b"\n")
                report.changes += 1
        end = max((st.last_ts for st in states.values()), default=0)
        learn(end, final=True)
        if models is not None:
            report.models = models.report()
        if finalize:
            tick = Source(name, 0, report.lines + 1)
            for user_id in sorted(states):
                for ch in processor.tick(user_id, states[user_id], end, tick).changes:
                    changes.write(orjson.dumps(ch) + b"\n")
                    report.changes += 1
    sizes: Counter[str] = Counter()
    with (out_dir / "snapshot.jsonl").open("wb") as snap:
        for user_id in sorted(states):
            st = states[user_id]
            sizes.update(st.segments.keys())
            snap.write(orjson.dumps({
                "user_id": user_id, "as_of": iso(end if finalize else st.last_ts),
                "segments": sorted(st.segments),
                "features": vector(st, end if finalize else None, processor.feature_config),
            }) + b"\n")
    report.users = len(states)
    report.segment_sizes = dict(sorted(sizes.items()))
    report.seconds = time.perf_counter() - started
    (out_dir / "summary.json").write_bytes(
        orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    return report


def _decoded(path: Path, decoder: EventDecoder, now_ms: int, dlq: IO[bytes],
             report: ReplayReport) -> Iterator[tuple[int, Event]]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            raw = line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            report.lines += 1
            try:
                yield lineno, decoder.decode_value("", raw, now_ms)
            except InvalidEvent as exc:
                _write_dlq(dlq, lineno, exc, raw, report)


def _write_dlq(dlq: IO[bytes], lineno: int, exc: InvalidEvent, raw: bytes,
               report: ReplayReport) -> None:
    report.dead_letters[exc.reason] += 1
    try:
        original: dict[str, str] = {"original": raw.decode("utf-8")}
    except UnicodeDecodeError:
        original = {"original_b64": base64.b64encode(raw).decode()}
    dlq.write(orjson.dumps({"line": lineno, "reason": exc.reason, "detail": exc.detail,
                            **original}) + b"\n")
