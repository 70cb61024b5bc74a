"""The compiled learning path must learn what river's ``learn_one`` learns."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from river import linear_model, optim, preprocessing

from models.learn import fastlearn
from models.learn.churn import ChurnModel
from models.learn.optim import AdaGrad
from models.learn.value import ValueModel

NAMES = ("a", "b", "c", "flat")


def _rows(n: int, seed: int) -> tuple[list[list[float]], list[float | None], list[float | None]]:
    rng = random.Random(seed)
    rows, yc, yv = [], [], []
    for i in range(n):
        a, b = rng.gauss(0, 3), rng.expovariate(0.2)
        rows.append([a, b, rng.random() * (i % 5), 1.0])   # "flat" never varies
        yc.append(None if i % 7 == 3 else float(a + rng.gauss(0, 1) > 0.5))
        yv.append(None if i % 5 == 1 else math.log1p(max(2 * b + a, 0.0)))
    return rows, yc, yv


def _river(rows, yc, yv):  # type: ignore[no-untyped-def]
    sc = preprocessing.StandardScaler()
    lr = linear_model.LogisticRegression(optimizer=AdaGrad(0.05), l2=1e-4)
    reg = linear_model.LinearRegression(optimizer=AdaGrad(0.05), l2=1e-4)
    for row, c, v in zip(rows, yc, yv, strict=True):
        x = dict(zip(NAMES, row, strict=True))
        sc.learn_one(x)
        xs = sc.transform_one(x)
        if c is not None:
            lr.learn_one(xs, bool(c))
        if v is not None:
            reg.learn_one(xs, v)
    return sc, lr, reg


def test_compiled_learning_matches_river_learn_one() -> None:
    rows, yc, yv = _rows(3000, seed=3)
    sc, lr, reg = _river(rows, yc, yv)
    fsc = preprocessing.StandardScaler()
    flr = linear_model.LogisticRegression(optimizer=AdaGrad(0.05), l2=1e-4)
    freg = linear_model.LinearRegression(optimizer=AdaGrad(0.05), l2=1e-4)
    nan = float("nan")
    # in uneven batches, as the worker learns them
    for start, stop in ((0, 1), (1, 700), (700, 701), (701, 3000)):
        fastlearn.learn_rows(
            NAMES, fsc, np.array(rows[start:stop]), flr,
            np.array([nan if c is None else c for c in yc[start:stop]]), freg,
            np.array([nan if v is None else v for v in yv[start:stop]]))
    for name in NAMES:
        assert fsc.counts[name] == sc.counts[name]
        assert fsc.means[name] == pytest.approx(sc.means[name], rel=1e-12, abs=1e-12)
        assert fsc.vars[name] == pytest.approx(sc.vars[name], rel=1e-12, abs=1e-12)
        for f, r in ((flr, lr), (freg, reg)):
            assert f.weights[name] == pytest.approx(r.weights[name], rel=1e-9, abs=1e-12)
            assert f.optimizer.g2[name] == pytest.approx(r.optimizer.g2[name], rel=1e-9)
    for f, r in ((flr, lr), (freg, reg)):
        assert f.intercept == pytest.approx(r.intercept, rel=1e-9, abs=1e-12)
        assert f.optimizer.n_iterations == r.optimizer.n_iterations
    # the weights moved: a model that learnt nothing would pass the checks above only
    # if river's did not learn either
    assert abs(lr.weights["a"]) > 0.1


def test_only_learners_it_reproduces_are_supported() -> None:
    assert fastlearn.supported(ChurnModel().clf)
    assert fastlearn.supported(ValueModel().reg)
    assert not fastlearn.supported(ChurnModel(optimizer="sgd").clf)
    assert not fastlearn.supported(ChurnModel(kind="hoeffding").clf)
    assert not fastlearn.supported(linear_model.LogisticRegression(
        optimizer=AdaGrad(0.1), loss=optim.losses.Log(weight_pos=2.0)))
    assert not fastlearn.supported(linear_model.LinearRegression(
        optimizer=AdaGrad(0.1), l1=0.01))
