"""Scaler + linear model folded into one weight list, for the per-tick scoring path.

Why: river scores a dict through ``StandardScaler.transform_one`` and a dict dot product,
about 20 us per model with 33 inputs. Between two learning batches the model does not
change, so ``w . (x - mean) / std + b`` folds into ``w' . x + b'`` once, after which a
score is one ``sum(map(mul, ...))`` over a list (a couple of microseconds). The folded
form is rebuilt lazily after the model learns.

Examples
--------
>>> from river import linear_model, preprocessing
>>> sc, lr = preprocessing.StandardScaler(), linear_model.LinearRegression()
>>> for i in range(50):
...     x = {"a": float(i), "b": 1.0}
...     sc.learn_one(x)
...     lr.learn_one(sc.transform_one(x), 2.0 * i)
>>> fast = Linear.fold(sc, lr.weights, lr.intercept, ("a", "b"))
>>> abs(fast.raw([7.0, 1.0]) - lr.predict_one(sc.transform_one({"a": 7.0, "b": 1.0}))) < 1e-9
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from operator import mul
from typing import Any

import numpy as np


class Linear:
    """``raw(values) = b + sum(w_i * values_i)`` with the scaler folded in.

    ``offsets[i]`` is the part of ``b`` that input ``i`` brought in (``w_i * mean_i /
    std_i``), so ``w[i] * values[i] - offsets[i]`` is that input's term of the unfolded
    model: its contribution to the score.
    """

    __slots__ = ("b", "offsets", "w")

    def __init__(self, w: list[float], b: float, offsets: list[float] | None = None) -> None:
        self.w = w
        self.b = b
        self.offsets = offsets if offsets is not None else [0.0] * len(w)

    @classmethod
    def fold(cls, scaler: Any, weights: Mapping[str, float], intercept: float,
             names: Sequence[str]) -> Linear:
        means, variances = scaler.means, scaler.vars
        w: list[float] = []
        offsets: list[float] = []
        b = float(intercept)
        for name in names:
            wi = weights.get(name, 0.0)
            var = variances.get(name, 0.0) if name in means else 0.0
            if wi and var:
                std = math.sqrt(var)
                w.append(wi / std)
                offsets.append(wi * means[name] / std)
                b -= offsets[-1]
            else:
                w.append(0.0)
                offsets.append(0.0)
        return cls(w, b, offsets)

    def terms(self, values: Sequence[float]) -> list[float]:
        """Each input's term of the score (``raw = intercept + sum(terms)``)."""
        return [wi * v - o for wi, v, o in zip(self.w, values, self.offsets, strict=True)]

    def raw(self, values: Sequence[float]) -> float:
        return self.b + sum(map(mul, self.w, values))

    def raw_rows(self, rows: Any) -> list[float]:
        """:meth:`raw` of each row of a 2-D array, as one matrix product."""
        return (rows @ np.array(self.w) + self.b).tolist()


def sigmoid(z: float) -> float:
    """Logistic function, safe for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
