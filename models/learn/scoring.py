"""One compiled call for the arithmetic of a user's scoring: the input transform, the
folded churn and value models, and the distances to the cluster centres.

Why: a scoring is the models' most frequent work (about half of all events, once per
user and day). In the interpreter, the transform, two dot products and six distances
over 34 inputs cost about 30 us; :func:`models.learn.kernels.score_row` does them in about
one. The folded linear models (:class:`~models.learn.compiled.Linear`) are stacked
into one array and restacked only when a model refolds after learning.

Examples
--------
>>> from models.learn.compiled import Linear
>>> from models.learn.inputs import ROW_NAMES, compact, transform_values
>>> x = compact({"orders_lifetime": 2.0, "recency_days": 3.0, "first_order_days": 40.0})
>>> w = [0.1] * len(ROW_NAMES)
>>> vals, churn, value, dist, nearest = Scorer().run(x, Linear(w, 0.5), Linear(w, -1.0))
>>> abs(churn - Linear(w, 0.5).raw(transform_values(x))) < 1e-12, dist is None
(True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.learn import kernels
from models.learn.compiled import Linear
from models.learn.inputs import I_FIRST_ORDER, I_ORDERS, I_RECENCY, IS_LOG, ROW_NAMES, Compact

_NO_CENTRES = np.zeros((0, len(ROW_NAMES)))
_IS_LOG = np.array(IS_LOG, dtype=np.bool_)
_ZEROS = np.zeros(len(ROW_NAMES))


class Scorer:
    """Scores compact inputs against two folded linear models and k-means centres.

    The arrays it returns are its own buffers, overwritten by the next :meth:`run`: a
    scoring reads them and keeps nothing.
    """

    def __init__(self) -> None:
        self._first: Linear | None = None
        self._second: Linear | None = None
        self._weights: Any = None
        self._biases: Any = None
        self._vals = np.empty(len(ROW_NAMES))
        self._raw = np.empty(3)  # both models' raw scores, then the nearest centre
        self._dist = np.empty(0)

    def run(self, x: Compact, first: Linear, second: Linear, centres: Any = None,
            mean: Any = None, inv_std: Any = None) -> tuple[Any, float, float, Any, int]:
        """``(values, first.raw(values), second.raw(values), distances, nearest)``: the
        transformed inputs (in ``ROW_NAMES`` order), both models' raw scores, the squared
        distances of the standardised values (``(values - mean) * inv_std``) to each row
        of ``centres`` and the row nearest (None and -1 without centres)."""
        if first is not self._first or second is not self._second:
            self._first, self._second = first, second
            self._weights = np.array([first.w, second.w], dtype=float)
            self._biases = np.array([first.b, second.b], dtype=float)
        if centres is None:
            centres, mean, inv_std = _NO_CENTRES, _ZEROS, _ZEROS
        elif len(self._dist) != len(centres):
            self._dist = np.empty(len(centres))
        raw, dist = self._raw, self._dist
        kernels.score_row(np.fromiter(x, float, len(x)), _IS_LOG, I_RECENCY, I_FIRST_ORDER,
                          I_ORDERS, self._weights, self._biases, mean, inv_std, centres,
                          self._vals, raw, dist)
        first_raw, second_raw, nearest = raw.tolist()
        if not len(centres):
            return self._vals, first_raw, second_raw, None, -1
        return self._vals, first_raw, second_raw, dist, int(nearest)


def transform_batch(xs: list[Compact]) -> Any:
    """:func:`~models.learn.inputs.transform_values` of many compact lists at once, as
    the rows of one array (``ROW_NAMES`` columns): what a learning batch starts from."""
    raw = np.array(xs, dtype=float).reshape(len(xs), -1)  # None becomes NaN
    out = np.empty((len(xs), len(ROW_NAMES)))
    kernels.transform_rows(raw, _IS_LOG, I_RECENCY, I_FIRST_ORDER, I_ORDERS, out)
    return out
