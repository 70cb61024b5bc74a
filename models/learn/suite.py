"""The model suite: clusters, churn and value models scored per user tick, learnt from
matured delayed labels with prequential evaluation and drift detection.

Why one object: the worker needs one thing to call per user tick (:meth:`ModelSuite.tick`),
one to feed matured labels to (:meth:`ModelSuite.learn`) and one to snapshot; the suite
is global per worker (the models learn from every user), while everything per user lives
in the user's durable state (the pending labels and the score memo).

Score memo (kept by the caller on the user's state, plain list): ``[scored_at_ms, churn,
tier, value, value_pct, cluster, *x]`` with ``x`` the compact inputs of that scoring. It
is what debouncing compares against and what the scores are between two scorings.

Examples
--------
>>> from models.learn.config import ModelConfig
>>> suite = ModelSuite(ModelConfig(clusters=3))
>>> s = suite.tick("u1", {"orders_lifetime": 2.0, "recency_days": 3.0}, 1_000, None)
>>> s.rescored, s.churn_tier in ("low", "medium", "high"), s.cluster  # -1: clusters warming up
(True, True, -1)
>>> suite.tick("u1", {"orders_lifetime": 2.0, "recency_days": 3.0}, 2_000, s.memo).rescored
False
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from river import preprocessing

from models.learn import fastlearn, kernels
from models.learn.churn import ChurnModel, tier_of
from models.learn.clusters import Clusters, SequentialKMeans
from models.learn.compiled import sigmoid
from models.learn.config import ModelConfig
from models.learn.debounce import debounced, due
from models.learn.drift import DriftMonitor
from models.learn.evaluation import ChurnEvaluation, ValueEvaluation
from models.learn.inputs import (
    ROW_NAMES,
    Compact,
    compact,
    raw,
    transform_values,
)
from models.learn.labels import Example
from models.learn.scoring import Scorer, transform_batch
from models.learn.value import ValueModel

log = logging.getLogger(__name__)

M_AT, M_CHURN, M_TIER, M_VALUE, M_PCT, M_CLUSTER = range(6)
M_X = 6
DAY_MS = 86_400_000
DESCRIBE_EVERY = 4  # cluster profiles are means: a sample of the learnt scorings suffices
MODELS = ("churn", "value", "clusters")


@dataclass(slots=True)
class Scores:
    """One user's scores; ``rescored`` is False when they come from the memo."""

    churn: float
    churn_tier: str
    previous_tier: str | None
    value: float
    value_pct: float
    cluster: int
    rescored: bool
    memo: list[Any]

    def as_dict(self) -> dict[str, Any]:
        """The ``scores`` of a change record."""
        return {"churn": round(self.churn, 4), "churn_tier": self.churn_tier,
                "value": round(self.value, 2), "value_pct": round(self.value_pct, 4),
                "cluster": self.cluster}

    def features(self) -> dict[str, float]:
        """What segment rules can read: ``churn_score``, ``value_pct``, ``cluster``."""
        return {"churn_score": self.churn, "value_pct": self.value_pct,
                "cluster": float(self.cluster)}

    @property
    def entered_high(self) -> bool:
        return self.rescored and self.churn_tier == "high" and self.previous_tier != "high"


class ModelSuite:
    """Global per worker; see the module docstring."""

    def __init__(self, cfg: ModelConfig, churn_kind: str = "logistic") -> None:
        self.cfg = cfg
        # One scaler for both supervised models: they read the same inputs, and learning
        # and applying it once per example instead of twice is a third of the learn cost.
        self.scaler = preprocessing.StandardScaler()
        self.churn = ChurnModel(kind=churn_kind, seed=cfg.seed, scaler=self.scaler)
        self.value = ValueModel(reference=cfg.value_reference, scaler=self.scaler)
        self.clusters = Clusters(k=cfg.clusters, algorithm=cfg.cluster_algorithm, seed=cfg.seed)
        self.churn_eval = ChurnEvaluation(cfg.rolling_window)
        self.value_eval = ValueEvaluation(cfg.rolling_window)
        self.drift = {"churn": DriftMonitor("churn", cfg.drift_delta),
                      "value": DriftMonitor("value", cfg.drift_delta)}
        self.learned = dict.fromkeys(MODELS, 0)
        self.scored = dict.fromkeys(MODELS, 0)
        self.snapshot_counter = 0
        self.snapshot_sha = "initial"
        self.offsets: dict[str, int] = {}
        self._eligible = 0
        self._scorer = Scorer()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_scorer"]  # buffers and a stack of folded weights: rebuilt on load
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._scorer = Scorer()

    def warm_up(self) -> None:
        """Compile (or load from the cache) the kernels before the first event."""
        kernels.warm_up()

    @property
    def model_version(self) -> str:
        """``<name>-<snapshot counter>-<sha8>`` of the snapshot the suite last was."""
        return f"{self.cfg.name}-{self.snapshot_counter}-{self.snapshot_sha[:8]}"

    # --- scoring --------------------------------------------------------------------
    def tick(self, user_id: str, features: Mapping[str, float | None], as_of: int,
             last_scored: list[Any] | None, cluster_due: bool = True,
             behaviour: bool = True) -> Scores:
        """Score the user unless debounced; ``last_scored`` is the memo kept on the state.

        Rescored when never scored, when ``max_staleness`` has passed, or, for new
        behaviour (``behaviour``: an event, an enriched review), when at least
        ``debounce`` has passed and an input changed materially.

        Time passing alone (a timer, ``behaviour=False``) rescores only a stale score:
        a window emptying moves the windowed counts without any new behaviour, and the
        days-since inputs move every day; both are what ``max_staleness`` is for.
        Without this every window boundary of every user (a day, a week, a month after
        the last click) was a rescoring: two thirds of all scorings.
        """
        if last_scored and self.debounced(last_scored, as_of, behaviour):
            return from_memo(last_scored)
        x = compact(features)
        if last_scored and not due(self.cfg, last_scored[M_AT], last_scored[M_X:], x, as_of):
            return from_memo(last_scored)  # past the debounce, but nothing material
        return self.score(x, as_of, last_scored, cluster_due)

    def debounced(self, last_scored: list[Any], as_of: int, behaviour: bool) -> bool:
        """True when the memo ``last_scored`` stands at ``as_of`` whatever the features
        (:func:`models.learn.debounce.debounced`)."""
        return debounced(self.cfg, last_scored[M_AT], as_of, behaviour)

    def score(self, x: Compact, as_of: int, last_scored: list[Any] | None,
              cluster_due: bool = True) -> Scores:
        """Score compact inputs now (no debouncing).

        With ``cluster_due`` False (the caller holds the user's cluster segment for a
        while, so a new assignment could not change it yet) the memo's cluster is kept
        instead of being predicted again.

        The clusters learn from a sample: at most one scoring per user and day, and of
        those every ``cluster_learn_every``-th. A user scored hourly should not pull the
        centres harder than one scored daily, and a k-means step (about 100 us in river)
        is the most expensive part of a scoring; six centres need thousands of points,
        not every scoring.
        """
        cfg = self.cfg
        values, p, v, dist, nearest = self._arithmetic(x)
        previous = last_scored[M_TIER] if last_scored else None
        tier = tier_of(p, previous, high=cfg.tier_high, medium=cfg.tier_medium,
                       hysteresis=cfg.hysteresis)
        value = self.value
        value.observe(v)
        pct = value.percentile(v)
        gap = DAY_MS
        c = -1
        if last_scored is None or as_of // gap != last_scored[M_AT] // gap:
            self._eligible += 1
            if self._eligible % cfg.cluster_learn_every == 0 or self.learned["clusters"] < 50:
                c, dist = self.clusters.learn_distances(values)
                nearest = -1
                if self.learned["clusters"] % DESCRIBE_EVERY == 0:
                    self.clusters.describe(c, x)
                self.learned["clusters"] += 1
        prev = last_scored[M_CLUSTER] if last_scored else None
        if c >= 0:
            c = self.clusters.sticky(values, c, prev, cfg.cluster_margin, dist)
        elif cluster_due or prev is None or prev < 0:
            c = self.clusters.assign(values, prev, cfg.cluster_margin, dist, nearest)
        else:
            c = prev
        self.clusters.move(prev, c)
        scored = self.scored
        scored["churn"] += 1
        scored["value"] += 1
        scored["clusters"] += 1
        memo = [as_of, p, tier, v, pct, c, *x]
        return Scores(p, tier, previous, v, pct, c, True, memo)

    def _arithmetic(self, x: Compact) -> tuple[Any, float, float, Any, int]:
        """Transformed inputs, churn probability, predicted value, the squared distances
        to the raw cluster centres and the nearest (None and -1 when not at hand).

        The default models (logistic churn, sequential k-means) take one compiled call
        (:class:`~models.learn.scoring.Scorer`); the others score through river.
        """
        model = self.clusters.model
        if self.churn.kind != "logistic" or not isinstance(model, SequentialKMeans):
            values = transform_values(x)
            return values, self.churn.predict_values(values), \
                self.value.predict_values(values), None, -1
        if model.centres is None:
            values, churn, value, dist, nearest = self._scorer.run(
                x, self.churn.folded(), self.value.folded())
        else:
            mean, inv_std = model.scaling()
            values, churn, value, dist, nearest = self._scorer.run(
                x, self.churn.folded(), self.value.folded(), model.centres, mean, inv_std)
        return values, sigmoid(churn), self.value.from_raw(value), dist, nearest

    def top_features(self, scores: Scores) -> list[dict[str, Any]]:
        """The inputs pushing ``scores``' churn probability up most, for a churn alert.

        Computed only for an alert that is sent, from the memo's raw inputs, not on every
        scoring that enters the high tier (an untrained model's included).
        """
        x = scores.memo[M_X:]
        values = transform_values(x)
        return [{"feature": t["feature"], "value": raw(x, t["feature"], values),
                 "contribution": t["contribution"]}
                for t in self.churn.contributions_values(values)]

    def cluster_reasons(self, cluster: int) -> list[dict[str, Any]]:
        """The distinctive features of ``cluster``, for a change record's reasons."""
        for prof in self.clusters.profiles():
            if prof["cluster"] == cluster:
                return list(prof["distinctive"])
        return []

    def cluster_profiles(self) -> list[dict[str, Any]]:
        return self.clusters.profiles()

    # --- learning -------------------------------------------------------------------
    def learn(self, examples: Iterable[Example], at_ms: int | None = None
              ) -> list[dict[str, Any]]:
        """Test-then-train on matured examples; return drift detections (policy applied).

        The test is per batch: every example is first scored by the models as they were
        before the batch (the folded scoring path, a list dot product), then they learn
        one example after the other. Scoring each example by the model of the moment
        needed a scaler transform and a dict dot product per model and example, a
        quarter of the learning cost; the weights learnt are the same either way.
        """
        detections: list[dict[str, Any]] = []
        batch = [e for e in examples if e[1] is not None or e[2] is not None]
        if not batch:
            return detections
        # 1. test: the models as they were before this batch (one compiled transform
        #    of the whole batch, both linear models as matrix products)
        values = transform_batch([e[0] for e in batch])
        churn_before = self._churn_scores(values)
        from_raw = self.value.from_raw
        value_before = [from_raw(y) for y in self.value.folded().raw_rows(values)]
        # 2. the metrics and drift monitors, which read only those scores; a detection
        #    splits the batch where the drift policy acts
        cuts: list[tuple[int, str]] = []
        for i, (_x, churn_label, value_label) in enumerate(batch):
            if churn_label is not None:
                loss = self.churn_eval.update(churn_label, churn_before[i])
                hit = self.drift["churn"].update(loss, at_ms)
                if hit:
                    detections.append(hit)
                    cuts.append((i + 1, "churn"))
            if value_label is not None:
                err = self.value_eval.update(value_label, value_before[i])
                hit = self.drift["value"].update(err, at_ms)
                if hit:
                    detections.append(hit)
                    cuts.append((i + 1, "value"))
        # 3. train, one example after the other, up to each detection: then its policy
        start = 0
        for stop, model in [*cuts, (len(batch), "")]:
            if stop > start:
                self._train(batch, values, start, stop)
            start = stop
            if model:
                self._after_drift(model)
        # the shared scaler moved: refold both scoring paths
        self.churn._fast = None
        self.value._fast = None
        for d in detections:
            d["policy"] = self.cfg.drift_policy
            log.warning("model drift detected: model=%s at_ms=%s policy=%s detail=%s",
                        d["model"], d["at_ms"], self.cfg.drift_policy, d["detail"])
        return detections

    def _churn_scores(self, values: Any) -> list[float]:
        """The churn model's probabilities for rows of transformed inputs."""
        if self.churn.kind != "logistic":
            return [self.churn.predict_values(row) for row in values.tolist()]
        return [sigmoid(z) for z in self.churn.folded().raw_rows(values)]

    def _train(self, batch: list[Example], values: Any, start: int, stop: int) -> None:
        """``learn_one`` on examples ``start:stop``: the shared scaler, then each model
        with a label; compiled (:mod:`models.learn.fastlearn`) for the default learners."""
        churn, value, scaler = self.churn, self.value, self.scaler
        part = batch[start:stop]
        self.learned["churn"] += sum(1 for e in part if e[1] is not None)
        self.learned["value"] += sum(1 for e in part if e[2] is not None)
        if fastlearn.supported(churn.clf) and fastlearn.supported(value.reg):
            rows = values[start:stop]
            y_churn = np.array([np.nan if e[1] is None else float(e[1]) for e in part])
            y_value = np.array([np.nan if e[2] is None else math.log1p(max(e[2], 0.0))
                                for e in part])
            fastlearn.learn_rows(ROW_NAMES, scaler, rows, churn.clf, y_churn, value.reg,
                                 y_value)
            return
        for i in range(start, stop):
            _x, churn_label, value_label = batch[i]
            row = dict(zip(ROW_NAMES, values[i].tolist(), strict=True))
            scaler.learn_one(row)
            xs = scaler.transform_one(row)
            if churn_label is not None:
                churn.learn_scaled(xs, churn_label)
            if value_label is not None:
                value.learn_scaled(xs, value_label)

    def _after_drift(self, model: str) -> None:
        policy = self.cfg.drift_policy
        if policy == "reset":
            self.reset(model)
        elif policy == "rollback":
            self.rollback(model, self.cfg.snapshot_dir)

    def reset(self, model: str) -> None:
        """Start ``model`` afresh (its evaluation keeps running)."""
        if model == "churn":
            self.churn = ChurnModel(kind=self.churn.kind, seed=self.cfg.seed,
                                    scaler=self.scaler)
        elif model == "value":
            old = self.value
            self.value = ValueModel(reference=self.cfg.value_reference, scaler=self.scaler)
            self.value.keep_reference(old)

    def rollback(self, model: str, directory: Path) -> bool:
        """Replace ``model`` with its state in the newest valid snapshot in ``directory``.

        Returns False (and keeps the current model) when there is no valid snapshot.
        """
        from models.learn.snapshot import load_newest_valid

        found = load_newest_valid(directory)
        if found is None:
            log.warning("drift rollback of %s: no valid snapshot in %s; keeping the model",
                        model, directory)
            return False
        other: ModelSuite = found[0]
        # The learner's weights go back; the shared input scaler (plain statistics of the
        # inputs, not of the concept) stays current.
        if model == "churn":
            self.churn.clf = other.churn.clf
            self.churn._fast = None
        elif model == "value":
            self.value.reg = other.value.reg
            self.value._fast = None
        log.warning("drift rollback of %s to %s", model, other.model_version)
        return True

    def report(self) -> dict[str, Any]:
        """Prequential metrics and counters, as plain data (CLI, metrics, docs)."""
        return {
            "model_version": self.model_version,
            "churn": self.churn_eval.report(),
            "value": self.value_eval.report(),
            "drift": {m: d.detections for m, d in self.drift.items()},
            "learned": dict(self.learned),
            "scored": dict(self.scored),
            "offsets": dict(self.offsets),
        }


def from_memo(memo: list[Any]) -> Scores:
    """The scores a memo holds (``rescored`` False)."""
    tier = memo[M_TIER]
    return Scores(memo[M_CHURN], tier, tier, memo[M_VALUE], memo[M_PCT], memo[M_CLUSTER],
                  False, memo)



