"""The worker-facing step: label bookkeeping, scoring, alerts and timers in one call."""

from __future__ import annotations

from dataclasses import replace

from models.learn.config import ModelConfig
from models.learn.inputs import MODEL_FEATURES
from models.learn.labels import Example
from models.learn.step import user_step
from models.learn.suite import ModelSuite

DAY = 86_400_000
I_REC = MODEL_FEATURES.index("recency_days")
I_LIFE = MODEL_FEATURES.index("first_order_days")


def _suite() -> ModelSuite:
    return ModelSuite(replace(ModelConfig(), horizon_days=30, snapshot_gap_s=86_400,
                              debounce_s=0, max_staleness_s=86_400, clusters=2))


def _user(recency: float, seen: float = 0.0, orders: float = 1.0) -> dict[str, float]:
    return {"recency_days": recency, "first_order_days": recency + 10.0,
            "orders_lifetime": orders, "last_seen_days": seen}


def test_order_inside_the_horizon_matures_as_retained_with_its_spend() -> None:
    suite = _suite()
    s = user_step(suite, "u", _user(0.0), 0, [], None, order=(0, 10.0))
    s = user_step(suite, "u", _user(0.0), 5 * DAY, s.pending, s.memo, order=(5 * DAY, 40.0))
    assert len(s.pending) == 2 and s.due == 30 * DAY and s.matured == []
    s = user_step(suite, "u", _user(25.0), 30 * DAY, s.pending, s.memo)
    assert [(m[1], m[2]) for m in s.matured] == [(0, 40.0)]
    assert s.due == 35 * DAY


def _trained() -> ModelSuite:
    """A suite whose churn model has learnt that a long recency means churn."""
    suite = _suite()
    examples: list[Example] = []
    for i in range(400):
        x: list[float | None] = [0.0] * len(MODEL_FEATURES)
        rec = 300.0 if i % 2 else 1.0
        x[I_REC], x[I_LIFE] = rec, rec + 10.0
        examples.append((x, i % 2, 0.0))
    for _ in range(5):
        suite.learn(examples)
    return suite


def test_alert_when_entering_high_tier_and_not_again() -> None:
    suite = _trained()
    first = user_step(suite, "u", _user(1.0), 0, [], None)
    assert first.alert is None and first.scores.churn_tier == "low"
    s = user_step(suite, "u", _user(300.0), DAY, first.pending, first.memo)
    assert s.alert is not None and s.alert["tier"] == "high"
    assert s.alert["previous_tier"] == "low" and s.alert["model_version"] == "suite-0-initial"
    again = user_step(suite, "u", _user(301.0), 3 * DAY, s.pending, s.memo)
    assert again.scores.rescored and again.scores.churn_tier == "high" and again.alert is None


def test_long_idle_users_stop_arming_label_timers() -> None:
    suite = _suite()
    s = user_step(suite, "u", _user(400.0, seen=400.0), 0, [], None)
    assert s.scores.rescored and s.pending == [] and s.due is None


def test_no_alert_before_the_churn_model_has_learnt_enough() -> None:
    suite = _trained()
    strict = ModelSuite(replace(suite.cfg, min_learned=suite.learned["churn"] + 1))
    strict.churn, strict.scaler, strict.learned = suite.churn, suite.scaler, suite.learned
    s = user_step(strict, "u", _user(300.0), DAY, [], None)
    assert s.scores.churn_tier == "high" and s.scores.entered_high and s.alert is None
    assert user_step(suite, "u", _user(300.0), DAY, [], None).alert is not None


def test_no_churn_alert_for_a_visitor_who_never_ordered() -> None:
    suite = _trained()
    s = user_step(suite, "u", _user(300.0, orders=0.0), DAY, [], None)
    assert s.scores.churn_tier == "high" and s.scores.entered_high and s.alert is None
    assert user_step(suite, "u", _user(300.0), DAY, [], None).alert is not None


def test_a_debounced_step_keeps_scores_labels_and_timer_but_a_due_label_matures() -> None:
    suite = ModelSuite(replace(ModelConfig(), horizon_days=30, snapshot_gap_s=86_400,
                               debounce_s=86_400, max_staleness_s=7 * 86_400, clusters=2))
    first = user_step(suite, "u", _user(0.0), 0, [], None, order=(0, 10.0))
    assert first.scores.rescored and first.due == 30 * DAY
    # within the debounce, with no order and no label due: the memo stands as it is
    quiet = user_step(suite, "u", _user(0.0, orders=1.0), DAY // 2, first.pending, first.memo)
    assert not quiet.scores.rescored and quiet.memo is first.memo
    assert quiet.pending == first.pending and quiet.due == 30 * DAY and quiet.matured == []
    assert quiet.scores.churn == first.scores.churn and quiet.alert is None
    # a timer (time alone) inside the staleness bound: the memo stands too
    timer = user_step(suite, "u", _user(6.0), 6 * DAY, first.pending, first.memo,
                      behaviour=False)
    assert not timer.scores.rescored and timer.due == 30 * DAY
    # an order within the debounce is still counted in the pending snapshot
    ordered = user_step(suite, "u", _user(0.0, orders=2.0), DAY // 2, first.pending,
                        first.memo, order=(DAY // 2, 25.0))
    assert not ordered.scores.rescored and ordered.pending[0][1:3] == [1, 25.0]
    # a label that falls due is matured even when the scores are debounced
    memo = [29 * DAY + 1, *first.memo[1:]]
    late = user_step(suite, "u", _user(30.0), 30 * DAY, first.pending, memo, behaviour=False)
    # (no order after the snapshot within the horizon: churned)
    assert not late.scores.rescored and [(m[1], m[2]) for m in late.matured] == [(1, 0.0)]
    assert late.pending == [] and late.due is None
