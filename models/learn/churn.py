"""Churn propensity: online logistic regression on scaled, log-transformed features.

Why logistic regression: it is calibrated enough for tiers (0.7 means something), costs
tens of microseconds per call, and its contributions (weight x scaled value) explain a
score in terms a marketer reads ("recency_days pushes towards churn"). Trees were
measured as well (``bench/retail_auc.py --churn-model``) and did not rank better on the
Online Retail holdout (see ``docs/models.md``).

Examples
--------
>>> m = ChurnModel()
>>> for _ in range(200):
...     m.learn({"recency_days": 4.0, "orders": 0.5}, 1)
...     m.learn({"recency_days": 0.5, "orders": 2.0}, 0)
>>> m.predict({"recency_days": 4.0, "orders": 0.5}) > 0.5 > m.predict({"recency_days": 0.5,
...     "orders": 2.0})
True
>>> m.contributions({"recency_days": 4.0, "orders": 0.5})[0]["feature"]
'recency_days'
>>> tier_of(0.72, "medium", high=0.7, medium=0.4, hysteresis=0.05)
'high'
>>> tier_of(0.67, "high", high=0.7, medium=0.4, hysteresis=0.05)
'high'
"""

from __future__ import annotations

import heapq
from typing import Any

from river import forest, linear_model, optim, preprocessing, tree

from models.learn.compiled import Linear, sigmoid
from models.learn.inputs import ROW_NAMES
from models.learn.optim import AdaGrad

CHURN_KINDS = ("logistic", "hoeffding", "arf")


class ChurnModel:
    """``StandardScaler`` followed by a classifier; ``kind`` picks the classifier."""

    def __init__(self, kind: str = "logistic", lr: float = 0.01, l2: float = 1e-4,
                 seed: int = 42, optimizer: str = "adagrad",
                 scaler: preprocessing.StandardScaler | None = None) -> None:
        if kind not in CHURN_KINDS:
            raise ValueError(f"unknown churn model {kind!r}; use one of {CHURN_KINDS}")
        self.kind = kind
        # The suite passes one scaler shared with the value model and learns it itself.
        self.owns_scaler = scaler is None
        self.scaler = preprocessing.StandardScaler() if scaler is None else scaler
        self.clf: Any
        if kind == "logistic":
            opt = {"sgd": optim.SGD, "adam": optim.Adam, "adagrad": AdaGrad}[optimizer]
            self.clf = linear_model.LogisticRegression(optimizer=opt(lr), l2=l2)
        elif kind == "hoeffding":
            self.clf = tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, seed=seed)
        else:
            self.clf = forest.ARFClassifier(n_models=10, seed=seed)
        self._fast: Linear | None = None

    def predict(self, row: dict[str, float]) -> float:
        """Probability of churn (no order within the horizon)."""
        p = self.clf.predict_proba_one(self.scaler.transform_one(row))
        return float(p.get(True, 0.0)) if p else 0.5

    def predict_values(self, values: list[float]) -> float:
        """:meth:`predict` on :func:`~models.learn.inputs.transform_values` output (fast)."""
        if self.kind != "logistic":
            return self.predict(dict(zip(ROW_NAMES, values, strict=True)))
        return sigmoid(self.folded().raw(values))

    def folded(self) -> Linear:
        """The scaler and the logistic model's weights as one linear function (cached
        until the model or the scaler learns)."""
        fast = self._fast
        if fast is None:
            fast = self._fast = Linear.fold(self.scaler, self.clf.weights, self.clf.intercept,
                                            ROW_NAMES)
        return fast

    def learn(self, row: dict[str, float], y: int) -> None:
        """Learn one example (and the scaler, unless it is shared)."""
        if self.owns_scaler:
            self.scaler.learn_one(row)
        self.learn_scaled(self.scaler.transform_one(row), y)

    def predict_scaled(self, xs: dict[str, float]) -> float:
        p = self.clf.predict_proba_one(xs)
        return float(p.get(True, 0.0)) if p else 0.5

    def learn_scaled(self, xs: dict[str, float], y: int) -> None:
        self._fast = None
        self.clf.learn_one(xs, bool(y))

    def contributions(self, row: dict[str, float], top: int = 3) -> list[dict[str, Any]]:
        """Features pushing the score up most (weight x scaled value), largest first.

        Only the logistic model has additive contributions; the others return ``[]``.
        """
        if self.kind != "logistic":
            return []
        weights = self.clf.weights
        xs = self.scaler.transform_one(row)
        return _top_positive([(weights.get(k, 0.0) * v, k) for k, v in xs.items()], top)

    def contributions_values(self, values: list[float], top: int = 3
                             ) -> list[dict[str, Any]]:
        """:meth:`contributions` on :func:`~models.learn.inputs.transform_values` output,
        from the folded weights (no scaler call: it runs on every churn alert)."""
        if self.kind != "logistic":
            return []
        return _top_positive(list(zip(self.folded().terms(values), ROW_NAMES, strict=True)),
                             top)


def _top_positive(terms: list[tuple[float, str]], top: int) -> list[dict[str, Any]]:
    """The ``top`` largest positive ``(contribution, feature)`` terms, largest first."""
    return [{"feature": k, "contribution": round(c, 4)}
            for c, k in heapq.nlargest(top, terms) if c > 0]


def tier_of(p: float, previous: str | None, *, high: float, medium: float,
            hysteresis: float) -> str:
    """``high``/``medium``/``low`` with hysteresis: leaving a tier needs a margin."""
    if p >= high or (previous == "high" and p >= high - hysteresis):
        return "high"
    if p >= medium or (previous in ("high", "medium") and p >= medium - hysteresis):
        return "medium"
    return "low"
