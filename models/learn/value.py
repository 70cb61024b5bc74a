"""Purchase value: online linear regression of next-horizon spend, ranked by percentile.

Why ``log1p`` spend as the target: spend is heavy-tailed (a few wholesalers spend 100x
the median); squared loss on the raw amount would be dominated by them, while ranking
users (which is what ``vip`` by predicted value needs) only requires a monotone scale.
The percentile is taken against a reference sample of recent predictions, so it means
"better than q of the users scored lately".

Examples
--------
>>> m = ValueModel(reference=100)
>>> for _ in range(300):
...     m.learn({"spend": 3.0}, 400.0)
...     m.learn({"spend": 0.0}, 0.0)
>>> m.predict({"spend": 3.0}) > 100 > m.predict({"spend": 0.0})
True
>>> for v in range(100):
...     m.observe(float(v))
>>> m.percentile(49.5)
0.5
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any

import numpy as np
from river import linear_model, preprocessing

from models.learn.compiled import Linear
from models.learn.inputs import ROW_NAMES
from models.learn.optim import AdaGrad

RESORT_EVERY = 256
MAX_LOG_SPEND = 15.0  # predictions are capped at about 3.3 million


class ValueModel:
    """``StandardScaler | LinearRegression`` on ``log1p(spend within the horizon)``."""

    def __init__(self, lr: float = 0.05, reference: int = 5000,
                 scaler: preprocessing.StandardScaler | None = None) -> None:
        # The suite passes one scaler shared with the churn model and learns it itself.
        self.owns_scaler = scaler is None
        self.scaler = preprocessing.StandardScaler() if scaler is None else scaler
        self.reg = linear_model.LinearRegression(optimizer=AdaGrad(lr), l2=1e-4)
        self.reference = reference
        # the reference sample: a ring in numpy, as sorting it is the cost of observe()
        self._ring = np.zeros(reference)
        self._size = 0
        self._next = 0
        self._sorted: list[float] = []
        self._dirty = 0
        self._fast: Linear | None = None

    def predict(self, row: dict[str, float]) -> float:
        """Expected spend within the horizon (currency units, >= 0)."""
        y = self.reg.predict_one(self.scaler.transform_one(row))
        return math.expm1(min(max(y, 0.0), MAX_LOG_SPEND))

    def predict_values(self, values: list[float]) -> float:
        """:meth:`predict` on :func:`~models.learn.inputs.transform_values` output (fast)."""
        return self.from_raw(self.folded().raw(values))

    def folded(self) -> Linear:
        """The scaler and the regression's weights as one linear function (cached until
        the model or the scaler learns)."""
        fast = self._fast
        if fast is None:
            fast = self._fast = Linear.fold(self.scaler, self.reg.weights, self.reg.intercept,
                                            ROW_NAMES)
        return fast

    @staticmethod
    def from_raw(y: float) -> float:
        """Spend from the regression's output (``log1p`` spend, capped)."""
        return math.expm1(min(max(y, 0.0), MAX_LOG_SPEND))

    def learn(self, row: dict[str, float], spend: float) -> None:
        """Learn one example (and the scaler, unless it is shared)."""
        if self.owns_scaler:
            self.scaler.learn_one(row)
        self.learn_scaled(self.scaler.transform_one(row), spend)

    def predict_scaled(self, xs: dict[str, float]) -> float:
        return math.expm1(min(max(self.reg.predict_one(xs), 0.0), MAX_LOG_SPEND))

    def learn_scaled(self, xs: dict[str, float], spend: float) -> None:
        self._fast = None
        self.reg.learn_one(xs, math.log1p(max(spend, 0.0)))

    def observe(self, value: float) -> None:
        """Add a prediction to the reference sample (a ring of the latest ones)."""
        if self._size < self.reference:
            self._ring[self._size] = value
            self._size += 1
        else:
            self._ring[self._next] = value
            self._next = (self._next + 1) % self.reference
        self._dirty += 1
        if self._dirty >= RESORT_EVERY or len(self._sorted) < RESORT_EVERY:
            self._sorted = np.sort(self._ring[:self._size]).tolist()
            self._dirty = 0

    def keep_reference(self, other: ValueModel) -> None:
        """Take over ``other``'s reference sample (a reset model ranks like the old one
        until its own predictions have replaced it)."""
        self._ring, self._size, self._next = other._ring, other._size, other._next
        self._sorted = other._sorted

    def __setstate__(self, state: dict[str, Any]) -> None:
        ring = state["_ring"]
        if isinstance(ring, list):  # snapshots from before the numpy ring
            state["_size"] = len(ring)
            state["_ring"] = np.zeros(state["reference"])
            state["_ring"][:len(ring)] = ring
        self.__dict__.update(state)

    def percentile(self, value: float) -> float:
        """Mid-rank share of the reference sample below ``value`` (0.5 without one)."""
        if not self._sorted:
            return 0.5
        s = self._sorted
        return (bisect_left(s, value) + bisect_right(s, value)) / (2 * len(s))
