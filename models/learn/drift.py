"""Concept drift on each model's loss stream, with ADWIN.

Why ADWIN on the loss: it needs no labels beyond those the model already learns from,
makes no assumption on the loss distribution, and flags a change when two sub-windows of
the recent losses differ significantly (``delta`` bounds false alarms). Only *increases*
of the loss count as drift: a model getting better is no reason to act.

Examples
--------
>>> mon = DriftMonitor("churn", delta=0.002)
>>> hits = [mon.update(0.1, at_ms=i) for i in range(1000)]
>>> hits = [h for h in (mon.update(2.0, at_ms=1000 + i) for i in range(300)) if h]
>>> hits[0]["model"], hits[0]["detail"]["mean_before"] < hits[0]["detail"]["mean_after"]
('churn', True)
"""

from __future__ import annotations

from typing import Any

from river import drift


class DriftMonitor:
    """ADWIN over one model's per-example loss."""

    def __init__(self, model: str, delta: float) -> None:
        self.model = model
        self.delta = delta
        self.adwin = drift.ADWIN(delta=delta)
        self.detections = 0
        self.last: dict[str, Any] | None = None
        self._mean_before = 0.0

    def update(self, loss: float, at_ms: int | None) -> dict[str, Any] | None:
        """Add one loss; return a detection record when the loss has risen."""
        before = self.adwin.estimation
        self.adwin.update(loss)
        if not self.adwin.drift_detected:
            return None
        after = self.adwin.estimation
        if after <= before:
            return None
        self.detections += 1
        self.last = {
            "model": self.model,
            "at_ms": at_ms,
            "detail": {"mean_before": round(before, 6), "mean_after": round(after, 6),
                       "window": int(self.adwin.width), "delta": self.delta},
        }
        return self.last
