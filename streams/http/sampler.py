"""Samples a metrics registry into short ring buffers for the live status page.

Prometheus keeps history when it runs; the status page must work without it. Every few
seconds :class:`StatusSampler` reads the registry once and turns counters into rates over
the interval, histogram buckets into windowed p50/p99 (the same interpolation as
PromQL's ``histogram_quantile``), and gauges into current values. Each sample is a
small dict; the last ``points`` of them are kept, so memory is bounded by design.

Examples
--------
>>> from prometheus_client import CollectorRegistry
>>> from streams.metrics import WorkerMetrics
>>> reg = CollectorRegistry()
>>> m = WorkerMetrics(reg)
>>> s = StatusSampler(reg, points=3, clock=iter([100.0, 110.0]).__next__)
>>> _ = s.sample()
>>> m.events.labels("shop.orders", "order").inc(50)
>>> m.changes.labels("vip", "entered").inc(2)
>>> p = s.sample()
>>> p["events_per_s"], p["flows"]["vip"]
(5.0, {'entered': 2.0, 'exited': 0.0})
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry

EVENTS = "segstream_events_consumed_total"
DLQ = "segstream_dlq_total"
CHANGES = "segstream_segment_changes_total"
MEMBERS = "segstream_segment_members"
LAG = "segstream_consumer_lag"
AUC = "segstream_model_auc"
LOGLOSS = "segstream_model_logloss"
LATENCIES = {"event": "segstream_e2e_event_time_seconds",
             "append": "segstream_e2e_append_time_seconds"}


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of cumulative ``(le, count)`` buckets, as PromQL computes it.

    Linear interpolation inside the bucket that holds the rank; the lowest bucket starts
    at 0; a rank in the ``+Inf`` bucket answers the largest finite bound. ``None`` when
    there are no observations.

    >>> histogram_quantile(0.5, [(1.0, 10), (2.0, 30), (math.inf, 30)])
    1.25
    >>> histogram_quantile(0.99, [(1.0, 0), (5.0, 0), (math.inf, 4)])
    5.0
    >>> histogram_quantile(0.5, [(1.0, 0), (math.inf, 0)]) is None
    True
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_le
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return lower_le


class _Reading:
    """One pass over the registry, indexed for the few families the page shows."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sums: dict[str, float] = {}
        self.series: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.buckets: dict[str, dict[float, float]] = {}
        for family in registry.collect():
            for s in family.samples:
                if s.name.endswith("_bucket") and "le" in s.labels:
                    base = s.name[: -len("_bucket")]
                    le = float(s.labels["le"])
                    per = self.buckets.setdefault(base, {})
                    per[le] = per.get(le, 0.0) + s.value
                    continue
                self.sums[s.name] = self.sums.get(s.name, 0.0) + s.value
                self.series.setdefault(s.name, []).append((dict(s.labels), s.value))

    def by(self, name: str, *labels: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for lab, value in self.series.get(name, []):
            key = tuple(lab.get(k, "") for k in labels)
            out[key] = out.get(key, 0.0) + value
        return out


class StatusSampler:
    """Bounded history of what the status page charts, sampled from a registry.

    Parameters
    ----------
    registry
        The process's registry (the same one ``/metrics`` serves).
    interval_s
        Seconds between samples when running in its thread (:meth:`start`).
    points
        Samples kept; older ones fall off the ring.
    clock
        Wall-clock seconds (sample timestamps); injected by tests.
    """

    def __init__(self, registry: CollectorRegistry, interval_s: float = 5.0,
                 points: int = 360, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self._clock = clock
        self._ring: deque[dict[str, Any]] = deque(maxlen=points)
        self._lock = threading.Lock()
        self._prev: _Reading | None = None
        self._prev_t = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- sampling
    def sample(self) -> dict[str, Any]:
        """Read the registry once, append one point to the ring and return it."""
        now = self._clock()
        cur = _Reading(self.registry)
        prev, dt = self._prev, now - self._prev_t

        def rate(name: str) -> float | None:
            if prev is None or dt <= 0:
                return None
            return max(0.0, cur.sums.get(name, 0.0) - prev.sums.get(name, 0.0)) / dt

        changes = cur.by(CHANGES, "segment", "change")
        before = prev.by(CHANGES, "segment", "change") if prev is not None else {}
        members = cur.by(MEMBERS, "segment")
        names = sorted({seg for seg, _ in changes} | {seg for (seg,) in members})
        if members:
            sizes = {seg: members.get((seg,), 0.0) for seg in names}
        else:  # no membership gauge in this process: net flow since it started
            sizes = {seg: changes.get((seg, "entered"), 0.0) - changes.get((seg, "exited"), 0.0)
                     for seg in names}
        flows = {
            seg: {c: max(0.0, changes.get((seg, c), 0.0) - before.get((seg, c), 0.0))
                  for c in ("entered", "exited")}
            for seg in names} if prev is not None else {}

        latency: dict[str, dict[str, float | None]] = {}
        for key, name in LATENCIES.items():
            now_b = cur.buckets.get(name, {})
            old_b = prev.buckets.get(name, {}) if prev is not None else {}
            recent = [(le, c - old_b.get(le, 0.0)) for le, c in now_b.items()]
            latency[key] = {"p50": histogram_quantile(0.5, recent),
                            "p99": histogram_quantile(0.99, recent)}

        models: dict[str, dict[str, float]] = {}
        for metric, field in ((AUC, "auc"), (LOGLOSS, "logloss")):
            values = cur.by(metric, "model", "window")
            for (model, window), value in sorted(values.items()):
                # the rolling window says how the model does now; overall as fallback
                if window == "rolling" or field not in models.get(model, {}):
                    models.setdefault(model, {})[field] = value

        point: dict[str, Any] = {
            "t": round(now, 3),
            "events_per_s": rate(EVENTS),
            "dlq_per_s": rate(DLQ),
            "changes_per_s": rate(CHANGES),
            "lag": cur.sums.get(LAG),
            "latency": latency,
            "segments": sizes,
            "sizes_source": "members" if members else "net_changes",
            "flows": flows,
            "models": models,
        }
        with self._lock:
            self._ring.append(point)
            self._prev, self._prev_t = cur, now
        return point

    def snapshot(self) -> dict[str, Any]:
        """The history as the status page reads it (``/status.json``)."""
        with self._lock:
            points = list(self._ring)
        segments = sorted({s for p in points for s in p["segments"]})
        models = sorted({m for p in points for m in p["models"]})
        return {"interval_s": self.interval_s, "capacity": self._ring.maxlen,
                "segments": segments, "models": models, "points": points}

    # ---------------------------------------------------------------- thread
    def start(self) -> StatusSampler:
        """Sample now and then every ``interval_s`` in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="status-sampler",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the sampling thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return
