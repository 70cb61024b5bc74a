"""Run river's ``learn_one`` for the default learners through :func:`kernels.glm_learn`.

Why a bridge instead of a re-implementation: the river objects stay the models (what is
snapshotted, rolled back and reported); for one batch of matured labels their state is
read into arrays, stepped through in compiled code exactly as ``learn_one`` would, and
written back. That costs a few dozen dict reads and writes per batch instead of several
dict-built gradients per example.

It applies to ``LogisticRegression`` / ``LinearRegression`` with this package's
:class:`~models.learn.optim.AdaGrad`, constant learning rates, L2 (no L1) and unit class
weights, which is what :class:`~models.learn.churn.ChurnModel` and
:class:`~models.learn.value.ValueModel` build by default; :func:`supported` says whether a
learner qualifies, and the suite falls back to ``learn_one`` for any other.

Examples
--------
>>> from river import linear_model, preprocessing
>>> from models.learn.optim import AdaGrad
>>> sc, lr = preprocessing.StandardScaler(), linear_model.LogisticRegression(
...     optimizer=AdaGrad(0.1), l2=1e-4)
>>> rows = np.array([[float(i % 7), 1.0 + i % 3] for i in range(200)])
>>> ys = np.array([float(i % 7 > 3) for i in range(200)])
>>> learn_rows(("a", "b"), sc, rows, lr, ys, None, None)
>>> lr.predict_proba_one(sc.transform_one({"a": 6.0, "b": 1.0}))[True] > 0.5
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import linear_model, optim

from models.learn import kernels
from models.learn.optim import AdaGrad

_EMPTY = np.zeros(0)


def supported(clf: Any) -> bool:
    """Whether :func:`learn_rows` reproduces ``clf.learn_one``."""
    if type(clf) is linear_model.LogisticRegression:
        loss_ok = isinstance(clf.loss, optim.losses.Log) and \
            clf.loss.weight_pos == 1.0 and clf.loss.weight_neg == 1.0
    elif type(clf) is linear_model.LinearRegression:
        loss_ok = type(clf.loss) is optim.losses.Squared
    else:
        return False
    return (loss_ok and type(clf.optimizer) is AdaGrad and clf.l1 == 0
            and isinstance(clf.optimizer.lr, optim.schedulers.Constant)
            and isinstance(clf.intercept_lr, optim.schedulers.Constant))


class _Glm:
    """One learner's weights, AdaGrad sums and intercept as arrays, and back."""

    def __init__(self, clf: Any, names: Sequence[str]) -> None:
        self.clf = clf
        weights = clf._weights
        g2 = clf.optimizer.g2
        self.w = np.array([weights.get(n, 0.0) for n in names], dtype=float)
        self.g2 = np.array([g2.get(n, 0.0) for n in names], dtype=float)
        self.state = np.array([clf.intercept, clf.optimizer.n_iterations], dtype=float)
        self.hp = np.array([clf.optimizer.lr.learning_rate, clf.optimizer.eps, clf.l2,
                            clf.intercept_lr.learning_rate, clf.clip_gradient], dtype=float)

    def write(self, names: Sequence[str]) -> None:
        clf = self.clf
        clf._weights.update(dict(zip(names, self.w.tolist(), strict=True)))
        clf.optimizer.g2.update(zip(names, self.g2.tolist(), strict=True))
        clf.intercept = float(self.state[0])
        clf.optimizer.n_iterations = int(self.state[1])


def learn_rows(names: Sequence[str], scaler: Any, rows: Any, churn: Any | None,
               y_churn: Any | None, value: Any | None, y_value: Any | None) -> None:
    """For each row in order (``names`` its columns): ``scaler.learn_one(row)``, then
    ``clf.learn_one(scaler.transform_one(row), y)`` for each learner given. A NaN label
    skips that learner for the row. The learners must be :func:`supported`."""
    counts = np.array([scaler.counts.get(n, 0) for n in names], dtype=float)
    means = np.array([scaler.means.get(n, 0.0) for n in names], dtype=float)
    variances = np.array([scaler.vars.get(n, 0.0) for n in names], dtype=float)
    c = _Glm(churn, names) if churn is not None else None
    v = _Glm(value, names) if value is not None else None
    nan = np.full(len(rows), np.nan)
    kernels.glm_learn(
        rows, 0, len(rows), counts, means, variances,
        nan if y_churn is None else y_churn, c.w if c else _EMPTY, c.g2 if c else _EMPTY,
        c.state if c else np.zeros(2), c.hp if c else np.zeros(5),
        nan if y_value is None else y_value, v.w if v else _EMPTY, v.g2 if v else _EMPTY,
        v.state if v else np.zeros(2), v.hp if v else np.zeros(5))
    for n, k in zip(names, counts.tolist(), strict=True):
        scaler.counts[n] = int(k)
    scaler.means.update(zip(names, means.tolist(), strict=True))
    scaler.vars.update(zip(names, variances.tolist(), strict=True))
    for glm in (c, v):
        if glm is not None:
            glm.write(names)
