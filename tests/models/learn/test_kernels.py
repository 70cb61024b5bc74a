"""The compiled kernels compute what the interpreted code computes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from models.learn import kernels
from models.learn.compiled import Linear
from models.learn.inputs import MODEL_FEATURES, ROW_NAMES, transform_values
from models.learn.scoring import Scorer, transform_batch


def _inputs(rng: random.Random) -> list[float | None]:
    return [None if rng.random() < 0.2 else rng.choice([0.0, 1.0, rng.expovariate(0.1)])
            for _ in MODEL_FEATURES]


def test_scoring_matches_the_interpreted_transform_models_and_distances() -> None:
    rng = random.Random(7)
    d = len(ROW_NAMES)
    churn = Linear([rng.gauss(0, 1) for _ in range(d)], 0.3)
    value = Linear([rng.gauss(0, 1) for _ in range(d)], -1.2)
    centres = np.array([[rng.gauss(0, 1) for _ in range(d)] for _ in range(6)])
    mean = np.array([rng.gauss(0, 2) for _ in range(d)])
    inv_std = np.array([rng.choice([0.0, rng.random() + 0.1]) for _ in range(d)])
    scorer = Scorer()
    for _ in range(200):
        x = _inputs(rng)
        if rng.random() < 0.3:  # a user without orders: the derived inputs' other branch
            x[MODEL_FEATURES.index("recency_days")] = None
        values, c, v, dist, nearest = scorer.run(x, churn, value, centres, mean, inv_std)
        expected = transform_values(x)
        assert values.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert c == pytest.approx(churn.raw(expected), rel=1e-9, abs=1e-9)
        assert v == pytest.approx(value.raw(expected), rel=1e-9, abs=1e-9)
        z = (np.array(expected) - mean) * inv_std
        want = ((centres - z) ** 2).sum(axis=1)
        assert dist.tolist() == pytest.approx(want.tolist(), rel=1e-9)
        assert nearest == int(want.argmin())
    assert scorer.run(_inputs(rng), churn, value)[3:] == (None, -1)


def test_batch_transform_matches_the_interpreted_transform_row_by_row() -> None:
    rng = random.Random(11)
    xs = [_inputs(rng) for _ in range(50)]
    for x in xs[::3]:
        x[MODEL_FEATURES.index("recency_days")] = None
    got = transform_batch(xs)
    assert got.shape == (50, len(ROW_NAMES))
    for row, x in zip(got.tolist(), xs, strict=True):
        assert row == pytest.approx(transform_values(x), rel=1e-12, abs=1e-12)


def test_kmeans_step_moves_the_nearest_centre_like_macqueen() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 5))
    counts = np.array([3.0, 1.0, 50.0, 7.0])
    mean, inv_std = rng.normal(size=5), rng.random(5) + 0.5
    for _ in range(50):
        v = rng.normal(size=5) * 3
        z = (v - mean) * inv_std
        before = ((centres - z) ** 2).sum(axis=1)
        j = int(before.argmin())
        want = centres.copy()
        want[j] -= (want[j] - z) * max(1.0 / (counts[j] + 1), 0.05)
        dist = np.empty(4)
        got = kernels.kmeans_step(v, mean, inv_std, centres, counts, 0.05, dist)
        assert got == j
        np.testing.assert_allclose(centres, want, rtol=1e-12)
        np.testing.assert_allclose(dist, ((centres - z) ** 2).sum(axis=1), rtol=1e-9)


def test_kernels_compile_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba import njit

    def no_cache(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file")
        return njit(*args, **kwargs)

    monkeypatch.setattr(kernels, "njit", no_cache)
    doubled = kernels._compiled(lambda a: a * 2.0)
    assert doubled(np.ones(2)).tolist() == [2.0, 2.0]
