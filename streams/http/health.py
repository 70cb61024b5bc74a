"""Liveness and readiness of a worker, as the consume loop reports them.

Kubernetes restarts a pod whose liveness probe fails and takes a pod whose readiness
probe fails out of rotation (and, in a StatefulSet rolling update, waits for it before
touching the next pod). So the two answers mean different things:

- **alive**: the process answers and its consume loop has not stalled. A loop that is
  restoring state is never called stalled: restoring a large store is slow, not stuck.
- **ready**: the worker holds an assignment, every assigned partition's state is
  restored, and the broker answered recently. A worker that is still joining the group,
  rebuilding a store, or cut off from Kafka is not ready, and says why.

The worker owns one :class:`Health` and calls it from its loop and its rebalance
callbacks; the HTTP handler only reads it. All methods are thread-safe.

Examples
--------
>>> h = Health(broker_timeout_s=30)
>>> h.readiness().reasons
['waiting for partition assignment', 'broker not reached yet']
>>> h.assigned([0, 1])
>>> h.restored(0)
>>> h.broker_ok()
>>> r = h.readiness()
>>> r.ready, r.reasons
(False, ['restoring partitions [1]'])
>>> h.restored(1)
>>> h.readiness().ready
True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One probe answer: whether it passes, why not, and the state behind it."""

    ready: bool
    reasons: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON body of the probe response."""
        return {"status": "ok" if self.ready else "unavailable", "reasons": self.reasons,
                **self.detail}


class Health:
    """What the probes report, kept up to date by the worker.

    Parameters
    ----------
    broker_timeout_s
        Readiness fails when the broker was last reached longer ago than this.
    stall_timeout_s
        Liveness fails when the loop reported no :meth:`tick` for this long while it was
        not restoring. ``0`` disables the stall check (liveness = process answers).
    clock
        Monotonic seconds; injected by tests.
    """

    def __init__(self, broker_timeout_s: float = 60.0, stall_timeout_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._broker_timeout_s = broker_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._assigned: set[int] | None = None  # None: no assignment received yet
        self._restored: set[int] = set()
        self._broker_at: float | None = None
        self._tick_at: float | None = None
        self._stopping = False
        self._started_at = clock()

    # ------------------------------------------------------------ called by the worker
    def assigned(self, partitions: Iterable[int]) -> None:
        """These partition numbers were added to the worker's assignment.

        Call it from the assign callback with the partitions it received: an eager
        rebalance revokes everything first, an incremental one adds to what is kept, and
        both end with the right set. New partitions are not ready until
        :meth:`restored`. An empty call is a valid, ready state (more workers than
        partitions): it says the worker has joined the group.
        """
        parts = set(partitions)
        with self._lock:
            self._assigned = (self._assigned or set()) | parts

    def revoked(self, partitions: Iterable[int]) -> None:
        """These partition numbers were revoked or lost (revoke and lost callbacks)."""
        parts = set(partitions)
        with self._lock:
            if self._assigned is not None:
                self._assigned -= parts
            self._restored -= parts

    def restored(self, partition: int) -> None:
        """The state of this partition number is restored; it can be served."""
        with self._lock:
            if self._assigned is not None and partition in self._assigned:
                self._restored.add(partition)

    def broker_ok(self, now: float | None = None) -> None:
        """The broker answered (a fetch, a commit, or a stats report with a broker UP)."""
        with self._lock:
            self._broker_at = self._clock() if now is None else now

    def tick(self, now: float | None = None) -> None:
        """The consume loop went round once; feeds the stall check of liveness."""
        with self._lock:
            self._tick_at = self._clock() if now is None else now

    def stopping(self) -> None:
        """Shutdown has begun: not ready any more (alive until the process exits)."""
        with self._lock:
            self._stopping = True

    # ------------------------------------------------------------ read by the probes
    def readiness(self) -> Verdict:
        """Ready when assigned partitions are restored and the broker answered lately."""
        with self._lock:
            now = self._clock()
            reasons: list[str] = []
            if self._stopping:
                reasons.append("shutting down")
            if self._assigned is None:
                reasons.append("waiting for partition assignment")
            else:
                pending = sorted(self._assigned - self._restored)
                if pending:
                    reasons.append(f"restoring partitions {pending}")
            if self._broker_at is None:
                reasons.append("broker not reached yet")
            elif now - self._broker_at > self._broker_timeout_s:
                reasons.append(f"broker not reached for {now - self._broker_at:.0f}s "
                               f"(limit {self._broker_timeout_s:g}s)")
            detail = {
                "assigned": None if self._assigned is None else sorted(self._assigned),
                "restored": sorted(self._restored),
                "broker_seen_s_ago": None if self._broker_at is None
                else round(now - self._broker_at, 3),
            }
        return Verdict(not reasons, reasons, detail)

    def liveness(self) -> Verdict:
        """Alive unless the loop stalled outside a restore (or always, when disabled)."""
        with self._lock:
            now = self._clock()
            restoring = self._assigned is not None and bool(self._assigned - self._restored)
            last = self._tick_at if self._tick_at is not None else self._started_at
            idle = now - last
            stalled = (self._stall_timeout_s > 0 and not restoring
                       and idle > self._stall_timeout_s)
            reasons = [f"consume loop stalled for {idle:.0f}s "
                       f"(limit {self._stall_timeout_s:g}s)"] if stalled else []
            detail = {"uptime_s": round(now - self._started_at, 3)}
        return Verdict(not stalled, reasons, detail)
