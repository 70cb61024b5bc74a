"""Behavioural clusters with stable ids and self-written profiles.

Why stable ids: a re-clustering (STREAMKMeans rebuilds its centres every chunk; a reset or
a reloaded snapshot starts elsewhere) may hand out the same groups under new numbers, and
every renumbering would look like users changing segment. The learner's centres are
therefore matched to the previous ones by minimum total squared distance
(:func:`scipy.optimize.linear_sum_assignment`) and the stable id follows its match.

Sizes count users: the suite tells :meth:`move` when a user's latest scoring puts them in
another cluster. Feature means come from the scorings the clusters learn from (a sample,
see :class:`~models.learn.suite.ModelSuite`), per cluster they were assigned to.

Examples
--------
>>> ids = StableIds()
>>> ids.relabel({0: [0.0, 0.0], 1: [10.0, 10.0]})
{0: 0, 1: 1}
>>> ids.relabel({0: [9.5, 10.2], 1: [0.3, -0.1]})     # the learner swapped its numbers
{0: 1, 1: 0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from river import cluster, preprocessing
from scipy.optimize import linear_sum_assignment

from models.learn import kernels
from models.learn.inputs import MODEL_FEATURES, ROW_NAMES, Row

RELABEL_EVERY = 500
RECOMPILE_EVERY = 32
STD_EVERY = 64
WARMUP = 500  # points before the k-means++ start: early users have few features yet
# Sequential k-means: the floor of the online rate, and a batch refit (Lloyd from the
# current centres and from RESTARTS fresh k-means++ picks, lowest inertia wins) over the
# last WINDOW learning points every REFIT_EVERY of them. Chosen by measurement on
# simulator traffic (docs/models.md): without the refit, ARI ranged 0.50-0.79 by seed.
MIN_RATE = 0.05
REFIT_EVERY = 500
WINDOW = 1500
RESTARTS = 2
REFIT_SPACING = 8
_ZERO = (0,) * len(MODEL_FEATURES)
DISTINCTIVE = 3


class StableIds:
    """Map a learner's raw centre numbers to ids that survive renumbering."""

    def __init__(self) -> None:
        self.reference: dict[int, list[float]] = {}
        self.mapping: dict[int, int] = {}
        self._inverse: dict[int, int] | None = None

    def raw_of(self, stable: int) -> int | None:
        """The learner's raw number of a stable id (None if no centre has it)."""
        inverse = getattr(self, "_inverse", None)  # snapshots from before the cache
        if inverse is None:
            inverse = self._inverse = {v: k for k, v in self.mapping.items()}
        return inverse.get(stable)

    def relabel(self, centres: Mapping[int, Sequence[float]]) -> dict[int, int]:
        """Match ``centres`` (raw id -> vector) to the reference; return raw -> stable."""
        raw_ids = sorted(centres)
        if not self.reference:
            self.mapping = {r: i for i, r in enumerate(raw_ids)}
        else:
            stable_ids = sorted(self.reference)
            a = np.array([centres[r] for r in raw_ids], dtype=float)
            b = np.array([self.reference[s] for s in stable_ids], dtype=float)
            cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
            rows, cols = linear_sum_assignment(cost)
            mapping = {raw_ids[i]: stable_ids[j] for i, j in zip(rows, cols, strict=True)}
            spare = (s for s in range(len(raw_ids) + len(stable_ids)) if s not in stable_ids)
            for r in raw_ids:
                if r not in mapping:
                    mapping[r] = next(spare)
            self.mapping = mapping
        self.reference = {self.mapping[r]: list(centres[r]) for r in raw_ids}
        self._inverse = None
        return dict(self.mapping)


class SequentialKMeans:
    """Online k-means on standardised inputs, in numpy (MacQueen's update, floored rate),
    with a periodic batch refit.

    Why next to river's: river's ``KMeans`` costs about 100 us a step (dict distances to
    every centre), which made clustering the most expensive part of a scoring. Centres
    start from a k-means++ pick among the first ``warmup`` points and move by
    ``max(1 / n_j, min_rate)``; inputs are standardised by a Welford running mean and
    variance. Online steps alone can settle with one centre on two personas for good
    (the other centres never get their points), which made the adjusted Rand index swing
    from 0.50 to 0.79 by seed. Every ``refit_every`` steps, Lloyd iterations over the last
    ``window`` points run from the current centres and from ``restarts`` fresh k-means++
    picks; the lowest inertia wins (:class:`Clusters` then matches the centres to its
    stable ids again, as after any renumbering). About 7 ms a refit; 0.78-0.81 on the same
    seeds (``docs/models.md``). Once the centres have seen many points, refits come every
    ``n / REFIT_SPACING`` steps instead (a stuck start is escaped early; later, a refit
    over the same window size mostly confirms the centres).

    >>> km = SequentialKMeans(k=2, dim=1, seed=1, warmup=4)
    >>> for v in (0.0, 10.0, 0.2, 9.8, 0.1, 10.1):
    ...     _ = km.learn_predict([v])
    >>> km.predict([0.05]) != km.predict([9.9])
    True
    """

    def __init__(self, k: int, dim: int, seed: int = 42, warmup: int | None = None,
                 min_rate: float = MIN_RATE, refit_every: int = REFIT_EVERY,
                 window: int = WINDOW, restarts: int = RESTARTS) -> None:
        self.refit_every = refit_every
        self._next_refit = refit_every
        self._refitted = False
        self.restarts = restarts
        # the most recent learning points (raw inputs), a ring buffer for the refit
        self._ring = np.zeros((window, dim), dtype=np.float32)
        self._filled = 0
        self.k = k
        self.dim = dim
        self.seed = seed
        self.warmup = warmup if warmup is not None else WARMUP
        self.min_rate = min_rate
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.centres: Any = None
        self.counts = np.zeros(k)
        self._buffer: list[Any] = []
        self._inv_std: Any = None
        self._std_at = 0

    @property
    def centers(self) -> dict[int, list[float]]:
        """Raw id -> centre (standardised space); empty until initialised."""
        if self.centres is None:
            return {}
        return {j: [float(v) for v in self.centres[j]] for j in range(self.k)}

    def scaling(self) -> tuple[Any, Any]:
        """The running mean and 1 / standard deviation that standardise an input.

        1/std is refreshed every n/32 steps (at most every STD_EVERY): it moves slowly
        once many points are in, and the refresh is most of the cost of a step.
        """
        if self._inv_std is None or self.n - self._std_at >= min(STD_EVERY,
                                                                 self.n // 32 + 1):
            self._inv_std = self._z_scale()
            self._std_at = self.n
        return self.mean, self._inv_std

    def _z(self, v: Any) -> Any:
        mean, inv_std = self.scaling()
        return (v - mean) * inv_std

    def learn_predict(self, values: Sequence[float]) -> int:
        return self.learn_distances(values)[0]

    def learn_distances(self, values: Sequence[float]) -> tuple[int, Any]:
        """Learn one point; return its centre and every centre's squared distance to it
        after the step (None while warming up, when the centre is 0)."""
        v = np.asarray(values, dtype=float)
        self.n += 1
        kernels.welford(v, float(self.n), self.mean, self.m2)
        if self.centres is None:
            self._buffer.append(v.copy())
            if len(self._buffer) < max(self.warmup, self.k):
                return 0, None
            self._init()
            dist = self.distances(v)
            return int(dist.argmin()), dist
        if self.refit_every:
            self._ring[self._filled % len(self._ring)] = v
            self._filled += 1
            self._refitted = self.n >= self._next_refit
            if self._refitted:
                self._next_refit = self.n + max(self.refit_every, self.n // REFIT_SPACING)
                self._refit()
        mean, inv_std = self.scaling()
        dist = np.empty(self.k)
        j = kernels.kmeans_step(v, mean, inv_std, self.centres, self.counts, self.min_rate,
                                dist)
        return j, dist

    def distances(self, values: Sequence[float] | Any) -> Any:
        """Squared distance of the standardised ``values`` to every centre."""
        mean, inv_std = self.scaling()
        dist = np.empty(self.k)
        kernels.nearest(np.asarray(values, dtype=float), mean, inv_std, self.centres, dist)
        return dist

    def _refit(self) -> None:
        """Batch k-means over the recent window, from the current centres and from fresh
        k-means++ picks; the lowest inertia wins."""
        self._inv_std = None
        pts = (self._ring[:min(self._filled, len(self._ring))] - self.mean) * self._z_scale()
        if len(pts) < 10 * self.k:
            return
        rng = np.random.default_rng(self.seed + self.n)
        best, best_inertia = _lloyd(pts, self.centres.copy())
        for _ in range(self.restarts):
            c, inertia = _lloyd(pts, _kmeanspp(pts, self.k, rng))
            if inertia < best_inertia:
                best, best_inertia = c, inertia
        self.centres = best

    @property
    def refitted(self) -> bool:
        """Whether the last learning step refitted the centres, which may renumber them
        (the caller's :class:`StableIds` matches them again)."""
        return self._refitted

    def predict(self, values: Sequence[float]) -> int:
        if self.centres is None:
            return 0
        return int(self.distances(values).argmin())

    def __setstate__(self, state: dict[str, Any]) -> None:
        # snapshots written before the refit existed load with it switched off
        self.__dict__.update({"refit_every": 0, "restarts": RESTARTS, "_filled": 0,
                              "_ring": np.zeros((0, state.get("dim", 1)))})
        self.__dict__.update(state)
        if "_next_refit" not in state:  # ... and before the spacing: the next multiple
            every = self.refit_every
            self._next_refit = (self.n // every + 1) * every if every else 0
            self._refitted = False

    def _z_scale(self) -> Any:
        """1 / standard deviation per input (0 where an input never varied)."""
        var = self.m2 / max(self.n, 1)
        return np.where(var > 0, 1.0 / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)

    def _init(self) -> None:
        """k-means++ seeding on the warm-up points (deterministic for a seed)."""
        rng = np.random.default_rng(self.seed)
        self._inv_std = None
        self.centres = _kmeanspp(np.array([self._z(b) for b in self._buffer]), self.k, rng)
        self.counts = np.ones(self.k)
        self._buffer = []


def _kmeanspp(pts: Any, k: int, rng: Any) -> Any:
    chosen = [pts[int(rng.integers(len(pts)))]]
    d = ((pts - chosen[0]) ** 2).sum(axis=1)  # squared distance to the nearest chosen
    for _ in range(1, k):
        total = d.sum()
        idx = int(rng.choice(len(pts), p=d / total)) if total > 0 else int(
            rng.integers(len(pts)))
        chosen.append(pts[idx])
        d = np.minimum(d, ((pts - pts[idx]) ** 2).sum(axis=1))
    return np.array(chosen, dtype=float)


def _lloyd(pts: Any, c: Any, iters: int = 8) -> tuple[Any, float]:
    """Lloyd iterations from ``c``; an emptied centre restarts at the farthest point.

    Stops early once an assignment repeats the previous one: the centres would come out
    the same, and so would every later iteration.
    """
    sq = np.einsum("ij,ij->i", pts, pts)
    rows = np.arange(len(pts))
    last = None
    for step in range(iters + 1):
        d = sq[:, None] - 2.0 * pts @ c.T + np.einsum("ij,ij->i", c, c)[None, :]
        lab = d.argmin(1)
        if step == iters or (last is not None and np.array_equal(lab, last)):
            break  # the last pass only assigns, for the inertia
        last = lab
        onehot = np.zeros((len(pts), len(c)))
        onehot[rows, lab] = 1.0
        n = onehot.sum(0)
        c = np.where(n[:, None] > 0, (onehot.T @ pts) / np.maximum(n, 1.0)[:, None],
                     pts[d[rows, lab].argmax()])
    return c, float(np.maximum(d[rows, lab], 0.0).sum())


class Clusters:
    """Scaled online clustering of the model inputs, with stable ids and profiles."""

    def __init__(self, k: int = 6, algorithm: str = "sequential", seed: int = 42) -> None:
        self.k = k
        self.algorithm = algorithm
        self.scaler = preprocessing.StandardScaler()
        self.model: Any
        if algorithm == "sequential":
            self.model = SequentialKMeans(k, len(ROW_NAMES), seed=seed)
        elif algorithm == "kmeans":
            self.model = cluster.KMeans(n_clusters=k, halflife=0.3, sigma=0.1, seed=seed)
        elif algorithm == "streamkmeans":
            self.model = cluster.STREAMKMeans(chunk_size=200, n_clusters=k, seed=seed)
        else:
            raise ValueError(f"unknown cluster algorithm {algorithm!r}")
        self.ids = StableIds()
        self.learned = 0
        # stable id -> [members, per-feature sums, sums of squares, counts]
        self.members: dict[int, int] = {}
        self.sums: dict[int, list[float]] = {}
        self.sumsq: dict[int, list[float]] = {}
        self.counts: dict[int, list[int]] = {}
        self._compiled: tuple[int, Any, Any, Any, list[int]] | None = None

    def _features(self) -> list[str]:
        return sorted(self.scaler.means) if self.scaler.means else []

    def centres(self) -> dict[int, list[float]]:
        if isinstance(self.model, SequentialKMeans):
            return self.model.centers
        names = self._features()
        return {c: [float(v.get(n, 0.0)) for n in names] for c, v in self.model.centers.items()}

    def learn_distances(self, values: Sequence[float]) -> tuple[int, Any]:
        """Learn one point; return its stable id (-1 while warming up) and, for the
        sequential learner, the squared distance to every raw centre (else None)."""
        if not isinstance(self.model, SequentialKMeans):
            return self.learn_predict(dict(zip(ROW_NAMES, values, strict=True))), None
        raw_id, dist = self.model.learn_distances(values)
        self.learned += 1
        if self.model.centres is None:
            return -1, None  # still warming up: no cluster yet
        if (self.learned % RELABEL_EVERY == 0 or self.model.refitted
                or raw_id not in self.ids.mapping):
            self.ids.relabel(self.model.centers)
        return self.ids.mapping[raw_id], dist

    def distances(self, values: Sequence[float]) -> Any:
        """Squared distances to the sequential learner's raw centres (None if there are
        none: another algorithm, or still warming up)."""
        model = self.model
        if not isinstance(model, SequentialKMeans) or model.centres is None:
            return None
        return model.distances(values)

    def assign(self, values: Sequence[float], previous: int | None,
               margin: float = 0.25, dist: Any = None, nearest: int = -1) -> int:
        """:meth:`predict_values` then :meth:`sticky`, from one distance computation
        (``dist`` and its ``nearest`` raw centre, when the caller has them)."""
        if dist is None:
            dist = self.distances(values)
            if dist is None:
                return self.sticky(values, self.predict_values(values), previous, margin)
            nearest = -1
        raw_new = nearest if nearest >= 0 else int(dist.argmin())
        if raw_new not in self.ids.mapping:
            self.ids.relabel(self.model.centers)
        return self.sticky(values, self.ids.mapping[raw_new], previous, margin, dist)

    def sticky(self, values: Sequence[float], new: int, previous: int | None,
               margin: float = 0.25, dist: Any = None) -> int:
        """Keep a user in ``previous`` unless ``new``'s centre is clearly closer.

        A user between two centres would otherwise flip with every small change of
        features or centres, and every flip is two segment changes downstream.
        """
        if previous is None or previous < 0 or previous == new:
            return new
        if dist is None:
            dist = self.distances(values)
            if dist is None:
                return new
        raw_prev, raw_new = self.ids.raw_of(previous), self.ids.raw_of(new)
        if raw_prev is None or raw_new is None:
            return new
        keep = dist[raw_prev] <= dist[raw_new] * (1 + margin) ** 2
        return previous if keep else new

    def learn_predict(self, row: Row) -> int:
        """Learn from one scored row and return its stable cluster id."""
        if isinstance(self.model, SequentialKMeans):
            return self.learn_distances([row[n] for n in ROW_NAMES])[0]
        self.scaler.learn_one(row)
        xs = self.scaler.transform_one(row)
        self.model.learn_one(xs)
        self.learned += 1
        if (self.learned % RELABEL_EVERY == 0 or not self.ids.mapping) and self.model.centers:
            self.ids.relabel(self.centres())
            self._compiled = None
        return self.predict_scaled(xs)

    def predict(self, row: Row) -> int:
        if isinstance(self.model, SequentialKMeans):
            return self.predict_values([row[n] for n in ROW_NAMES])
        return self.predict_scaled(self.scaler.transform_one(row))

    def predict_values(self, values: Sequence[float]) -> int:
        """Stable id for :func:`~models.learn.inputs.transform_values` output.

        Uses the centres as of at most :data:`RECOMPILE_EVERY` learning steps ago, folded
        with the scaler into numpy arrays (a few microseconds instead of river's dict
        distance loop over every centre).
        """
        if isinstance(self.model, SequentialKMeans):
            if self.model.centres is None:
                return -1  # still warming up: no cluster yet
            raw_id = self.model.predict(values)
            if raw_id not in self.ids.mapping:
                self.ids.relabel(self.model.centers)
            return self.ids.mapping[raw_id]
        comp = self._compiled
        if comp is None or self.learned - comp[0] >= RECOMPILE_EVERY:
            comp = self._compile()
            if comp is None:
                return 0
        _, mean, inv_std, centres, stable = comp
        z = (np.asarray(values) - mean) * inv_std
        return stable[int(((centres - z) ** 2).sum(axis=1).argmin())]

    def _compile(self) -> tuple[int, Any, Any, Any, list[int]] | None:
        if not self.model.centers or not self.scaler.means:
            return None
        means, variances = self.scaler.means, self.scaler.vars
        mean = np.array([means.get(n, 0.0) for n in ROW_NAMES])
        var = np.array([variances.get(n, 0.0) for n in ROW_NAMES])
        inv_std = np.where(var > 0, 1.0 / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
        raw_ids = sorted(self.model.centers)
        centres = np.array([[float(self.model.centers[r].get(n, 0.0)) for n in ROW_NAMES]
                            for r in raw_ids])
        if any(r not in self.ids.mapping for r in raw_ids):
            self.ids.relabel(self.centres())
        self._compiled = (self.learned, mean, inv_std, centres,
                          [self.ids.mapping[r] for r in raw_ids])
        return self._compiled

    def predict_scaled(self, xs: dict[str, float]) -> int:
        if not self.model.centers:
            return 0
        raw = self.model.predict_one(xs)
        if raw not in self.ids.mapping:
            self.ids.relabel(self.centres())
        return self.ids.mapping[raw]

    def move(self, old: int | None, new: int) -> None:
        """A user's latest scoring moved them from ``old`` (None: new user) to ``new``."""
        if old == new:
            return
        if old is not None and old in self.members:
            self.members[old] -= 1
        if new >= 0:
            self.members[new] = self.members.get(new, 0) + 1

    def describe(self, c: int, x: Sequence[float | None], sign: int = 1) -> None:
        """Count the raw features ``x`` of a scoring assigned to ``c`` in its profile."""
        if c < 0:
            return
        n = len(MODEL_FEATURES)
        sums = self.sums.setdefault(c, [0.0] * n)
        sumsq = self.sumsq.setdefault(c, [0.0] * n)
        counts = self.counts.setdefault(c, [0] * n)
        for i, v in enumerate(x):
            if v is not None:
                sums[i] += sign * v
                sumsq[i] += sign * v * v
                counts[i] += sign

    def profiles(self) -> list[dict[str, Any]]:
        """Per cluster: size, share and the features that set it apart (by z-score)."""
        total = sum(self.members.values())
        n = len(MODEL_FEATURES)
        all_sum = [sum(s[i] for s in self.sums.values()) for i in range(n)]
        all_sq = [sum(s[i] for s in self.sumsq.values()) for i in range(n)]
        all_cnt = [sum(c[i] for c in self.counts.values()) for i in range(n)]
        out: list[dict[str, Any]] = []
        for c in sorted(set(self.members) | set(self.sums)):
            size = self.members.get(c, 0)
            scored: list[tuple[float, dict[str, Any]]] = []
            for i, name in enumerate(MODEL_FEATURES):
                cnt, acnt = self.counts.get(c, _ZERO)[i], all_cnt[i]
                if cnt <= 0 or acnt <= 1:
                    continue
                mean = self.sums[c][i] / cnt
                overall = all_sum[i] / acnt
                var = max(all_sq[i] / acnt - overall * overall, 0.0)
                if var <= 1e-12:
                    continue
                z = (mean - overall) / math.sqrt(var)
                label = name.replace("_", " ")
                scored.append((abs(z), {
                    "feature": name, "value": round(mean, 3), "overall": round(overall, 3),
                    "text": f"{label} {_fmt(mean)} vs {_fmt(overall)} overall"}))
            scored.sort(key=lambda t: -t[0])
            out.append({"cluster": c, "size": size,
                        "share": round(size / total, 4) if total else 0.0,
                        "distinctive": [d for _, d in scored[:DISTINCTIVE]]})
        return out


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
