"""Compiled arithmetic of the default models, with numba: scoring a user, a sequential
k-means step and a run of river's ``learn_one`` over a batch of matured labels.

Why: with the models on, the worker spent more time in model arithmetic than in
features and rules together. Each of these loops runs over ~34 inputs and a handful of
centres, where the interpreter's cost per operation (and numpy's per call) is larger
than the arithmetic itself. Compiled, a scoring costs about a microsecond and a learning
step well under one, which keeps the models' share of the worker's time within budget
(``bench/models_cost.py``).

The learners' state of record stays in the river objects (``StandardScaler``,
``LogisticRegression`` / ``LinearRegression`` with AdaGrad): :func:`glm_learn` steps
through the examples exactly as ``learn_one`` does, one after the other, on arrays read
from those objects, and the results are written back (:mod:`models.learn.fastlearn`).
``tests/models/learn/test_kernels.py`` checks the weights against river's own path.

Compiled code is cached next to this module (``cache=True``) and compiled, or loaded
from the cache, by :func:`warm_up` at worker start, not on the first event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

log = logging.getLogger(__name__)

LOG_LOSS, SQUARED_LOSS = 0, 1


def _compiled(fn: Callable[..., Any]) -> Any:
    """``njit`` with numba's on-disk cache, or without it where no cache directory is
    writable (the kernels are then compiled at every start, a few seconds)."""
    try:
        return njit(cache=True)(fn)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        log.warning("numba cannot cache %s (%s); set NUMBA_CACHE_DIR to a writable "
                    "directory to keep compiled kernels across starts", fn.__name__, exc)
        return njit(fn)


@_compiled
def transform_row(x: Any, is_log: Any, i_recency: int, i_first: int, i_orders: int,
                  out: Any) -> None:  # pragma: no cover - compiled
    """:func:`models.learn.inputs.transform_values` on a float array (NaN = None)."""
    n = x.shape[0]
    for i in range(n):
        v = x[i]
        if math.isnan(v):
            out[i] = 0.0
        elif is_log[i]:
            out[i] = math.log1p(v if v > 0.0 else 0.0)
        else:
            out[i] = v
    recency = x[i_recency]
    life = x[i_first]
    if not math.isnan(life) and not math.isnan(recency):
        orders = x[i_orders]
        if math.isnan(orders):
            orders = 0.0
        share = recency / (life + 1.0)
        out[n] = 0.0
        out[n + 1] = math.log1p(orders / (life + 1.0) * 30.0)
        out[n + 2] = share
        out[n + 3] = math.log1p(share * orders)
    else:
        out[n] = 1.0 if math.isnan(recency) else 0.0
        out[n + 1] = 0.0
        out[n + 2] = 1.0
        out[n + 3] = 0.0


@_compiled
def transform_rows(xs: Any, is_log: Any, i_recency: int, i_first: int, i_orders: int,
                   out: Any) -> None:  # pragma: no cover - compiled
    """:func:`transform_row` for each row of ``xs`` into the same row of ``out``."""
    for r in range(xs.shape[0]):
        transform_row(xs[r], is_log, i_recency, i_first, i_orders, out[r])


@_compiled
def score_row(x: Any, is_log: Any, i_recency: int, i_first: int, i_orders: int,
              weights: Any, biases: Any, mean: Any, inv_std: Any, centres: Any,
              vals: Any, raw: Any, dist: Any) -> None:  # pragma: no cover - compiled
    """Transform ``x`` into ``vals``; ``raw[m] = biases[m] + weights[m] . vals`` for each
    folded linear model and ``raw[-1]`` the nearest centre; ``dist[j]`` the squared
    distance of the standardised ``vals`` to centre ``j`` (none when ``centres`` has no
    rows)."""
    transform_row(x, is_log, i_recency, i_first, i_orders, vals)
    d = vals.shape[0]
    for m in range(weights.shape[0]):
        s = biases[m]
        for i in range(d):
            s += weights[m, i] * vals[i]
        raw[m] = s
    raw[raw.shape[0] - 1] = nearest(vals, mean, inv_std, centres, dist)


@_compiled
def nearest(v: Any, mean: Any, inv_std: Any, centres: Any,
            dist: Any) -> int:  # pragma: no cover - compiled
    """The first centre nearest to the standardised ``v``; ``dist`` gets every centre's
    squared distance."""
    best = 0
    for j in range(centres.shape[0]):
        s = 0.0
        for i in range(v.shape[0]):
            t = centres[j, i] - (v[i] - mean[i]) * inv_std[i]
            s += t * t
        dist[j] = s
        if s < dist[best]:
            best = j
    return best


@_compiled
def welford(v: Any, n: float, mean: Any, m2: Any) -> None:  # pragma: no cover - compiled
    """Running mean and sum of squared deviations, ``n`` counting ``v`` already."""
    for i in range(v.shape[0]):
        delta = v[i] - mean[i]
        mean[i] += delta / n
        m2[i] += delta * (v[i] - mean[i])


@_compiled
def kmeans_step(v: Any, mean: Any, inv_std: Any, centres: Any, counts: Any,
                min_rate: float, dist: Any) -> int:  # pragma: no cover - compiled
    """MacQueen's step: move the nearest centre towards the standardised ``v`` by
    ``max(1 / n_j, min_rate)``; ``dist`` gets every centre's squared distance after it."""
    d = centres.shape[1]
    best = nearest(v, mean, inv_std, centres, dist)
    counts[best] += 1.0
    rate = max(1.0 / counts[best], min_rate)
    s = 0.0
    for i in range(d):
        t = centres[best, i] - (v[i] - mean[i]) * inv_std[i]
        centres[best, i] -= t * rate
        t2 = centres[best, i] - (v[i] - mean[i]) * inv_std[i]
        s += t2 * t2
    dist[best] = s
    return best


@_compiled
def _glm_step(xs: Any, y: float, loss: int, w: Any, g2: Any, state: Any, lr: float,
              eps: float, l2: float, intercept_lr: float,
              clip: float) -> None:  # pragma: no cover - compiled
    # state = [intercept, n_iterations]; river's GLM._fit with AdaGrad, as in learn_one
    raw = state[0]
    for i in range(xs.shape[0]):
        raw += w[i] * xs[i]
    if loss == LOG_LOSS:
        yt = 1.0 if y != 0.0 else -1.0
        z = raw * yt
        if z > 18.0:
            lg = math.exp(-z) * -yt
        elif z < -18.0:
            lg = -yt
        else:
            lg = -yt / (math.exp(z) + 1.0)
    else:
        lg = 2.0 * (raw - y)
    lg = min(max(lg, -clip), clip)
    state[0] -= intercept_lr * lg
    for i in range(xs.shape[0]):
        gi = xs[i] * lg
        if l2 != 0.0:
            gi += l2 * w[i]
        s = g2[i] + gi ** 2
        g2[i] = s
        w[i] -= lr / (s + eps) ** 0.5 * gi
    state[1] += 1.0


@_compiled
def glm_learn(rows: Any, start: int, stop: int, counts: Any, means: Any, variances: Any,
              y_churn: Any, churn_w: Any, churn_g2: Any, churn_state: Any, churn_hp: Any,
              y_value: Any, value_w: Any, value_g2: Any, value_state: Any,
              value_hp: Any) -> None:  # pragma: no cover - compiled
    """Learn rows ``start:stop`` one after the other: the shared standard scaler, then
    the churn model where its label is not NaN, then the value model likewise.

    ``*_hp`` = ``[lr, eps, l2, intercept_lr, clip_gradient]``; ``*_state`` =
    ``[intercept, n_iterations]``; an empty ``*_w`` skips that model.
    """
    d = rows.shape[1]
    xs = np.empty(d)
    for r in range(start, stop):
        for i in range(d):
            xi = rows[r, i]
            counts[i] += 1.0
            old = means[i]
            means[i] += (xi - old) / counts[i]
            variances[i] += ((xi - old) * (xi - means[i]) - variances[i]) / counts[i]
        for i in range(d):
            v = variances[i]
            xs[i] = (rows[r, i] - means[i]) / v ** 0.5 if v else 0.0
        if churn_w.shape[0] and not math.isnan(y_churn[r]):
            _glm_step(xs, y_churn[r], LOG_LOSS, churn_w, churn_g2, churn_state,
                      churn_hp[0], churn_hp[1], churn_hp[2], churn_hp[3], churn_hp[4])
        if value_w.shape[0] and not math.isnan(y_value[r]):
            _glm_step(xs, y_value[r], SQUARED_LOSS, value_w, value_g2, value_state,
                      value_hp[0], value_hp[1], value_hp[2], value_hp[3], value_hp[4])


def warm_up() -> None:
    """Compile every kernel now (or load it from the cache), not on the first event."""
    x = np.array([1.0, np.nan, 2.0])
    is_log = np.array([True, False, True])
    d, k = len(x) + 4, 2  # the transform appends four derived inputs
    vals, raw, dist = np.empty(d), np.empty(3), np.empty(k)
    score_row(x, is_log, 0, 1, 2, np.zeros((2, d)), np.zeros(2), np.zeros(d), np.ones(d),
              np.zeros((k, d)), vals, raw, dist)
    transform_rows(x.reshape(1, -1), is_log, 0, 1, 2, np.empty((1, d)))
    welford(vals, 1.0, np.zeros(d), np.zeros(d))
    kmeans_step(vals, np.zeros(d), np.ones(d), np.zeros((k, d)), np.ones(k), 0.05, dist)
    hp = np.array([0.01, 1e-8, 1e-4, 0.01, 1e12])
    glm_learn(np.zeros((1, d)), 0, 1, np.zeros(d), np.zeros(d), np.zeros(d),
              np.array([1.0]), np.zeros(d), np.zeros(d), np.zeros(2), hp,
              np.array([np.nan]), np.zeros(0), np.zeros(0), np.zeros(2), hp)
