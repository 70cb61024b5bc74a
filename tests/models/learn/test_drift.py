"""Drift: ADWIN on the loss flags a synthetic concept switch; the policy acts on it."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from models.learn.config import ModelConfig
from models.learn.drift import DriftMonitor
from models.learn.inputs import MODEL_FEATURES
from models.learn.labels import Example
from models.learn.snapshot import save
from models.learn.suite import ModelSuite

I_REC = MODEL_FEATURES.index("recency_days")


def _examples(n: int, flipped: bool, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out: list[Example] = []
    for _ in range(n):
        rec = rng.choice([1.0, 200.0])
        x: list[float | None] = [0.0] * len(MODEL_FEATURES)
        x[I_REC] = rec
        churned = int(rec > 100) ^ int(flipped)
        out.append((x, churned, 0.0))
    return out


def _cfg(policy: str, tmp: Path) -> ModelConfig:
    return replace(ModelConfig(), drift_policy=policy, snapshot_dir=tmp, clusters=2)


def test_switch_in_the_concept_is_detected_and_counted(tmp_path: Path) -> None:
    suite = ModelSuite(_cfg("keep", tmp_path))
    assert suite.learn(_examples(3000, False, 1), at_ms=1) == []
    hits = suite.learn(_examples(1500, True, 2), at_ms=2)
    churn_hits = [h for h in hits if h["model"] == "churn"]
    assert churn_hits and churn_hits[0]["at_ms"] == 2 and churn_hits[0]["policy"] == "keep"
    assert suite.report()["drift"]["churn"] == len(churn_hits)


def test_no_drift_on_a_stationary_stream() -> None:
    mon = DriftMonitor("churn", delta=0.002)
    rng = random.Random(5)
    assert not [h for h in (mon.update(rng.random(), i) for i in range(5000)) if h]


def test_reset_policy_starts_the_model_afresh(tmp_path: Path) -> None:
    suite = ModelSuite(_cfg("reset", tmp_path))
    suite.learn(_examples(3000, False, 1))
    before = suite.churn
    hits = suite.learn(_examples(1500, True, 2))
    assert any(h["model"] == "churn" for h in hits) and suite.churn is not before


def test_rollback_policy_reloads_the_last_good_snapshot(tmp_path: Path) -> None:
    suite = ModelSuite(_cfg("rollback", tmp_path))
    suite.learn(_examples(3000, False, 1))
    save(suite, tmp_path, {})
    good = dict(suite.churn.clf.weights)
    suite.learn(_examples(1500, True, 2))
    # right after the rollback the churn model holds the snapshot's weights, then learns on
    assert suite.drift["churn"].detections >= 1
    fresh = ModelSuite(_cfg("keep", tmp_path))
    fresh.learn(_examples(3000, False, 1))
    assert good == dict(fresh.churn.clf.weights)
    assert suite.rollback("churn", tmp_path) and dict(suite.churn.clf.weights) == good
    assert not suite.rollback("churn", tmp_path / "empty")
