"""One user's model step per event or timer, as one pure call for the worker.

Why: the worker's processor should not need to know the order of the label and scoring
steps. For an event (or a timer firing) at ``as_of`` it passes the user's durable
``pending`` labels and score ``memo`` and gets back the new ones, the scores, the examples
that matured (to batch into :meth:`ModelSuite.learn`), the ``alerts.churn`` record when
the user entered the high tier, and the time of the user's next label timer.

Order of the steps: the order (if any) is counted in the pending snapshots first, then
everything due by ``as_of`` matures, then the user is scored (debounced), and a rescored
user gets a new label snapshot, unless idle for more than ``cfg.snapshot_idle_days``
(so timers of long-gone users stop re-arming). A customer (one order or more) whose
rescoring enters the high churn tier gets an ``alerts.churn`` record.

Examples
--------
>>> from models.learn.config import ModelConfig
>>> from models.learn.suite import ModelSuite
>>> suite = ModelSuite(ModelConfig(horizon_days=30, snapshot_gap_s=86_400))
>>> f = {"orders_lifetime": 1.0, "recency_days": 0.0, "last_seen_days": 0.0}
>>> s = user_step(suite, "u1", f, 0, [], None, order=(0, 25.0))
>>> len(s.pending), s.due == 30 * 86_400_000, s.matured
(1, True, [])
>>> s2 = user_step(suite, "u1", f, 31 * 86_400_000, s.pending, s.memo)
>>> s2.matured[0][1:]                                  # no order within 30 days: churned
(1, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.learn.alerts import churn_alert
from models.learn.inputs import compact
from models.learn.labels import Example, Pending, add_snapshot, next_due, on_order, on_watermark
from models.learn.suite import M_X, ModelSuite, Scores, from_memo

_NONE: list[Example] = []  # shared empty list of matured examples; never mutated


@dataclass(slots=True)
class Step:
    """What the worker stores (``pending``, ``memo``, ``due``) and acts on."""

    scores: Scores
    pending: Pending
    memo: list[Any]
    matured: list[Example]
    alert: dict[str, Any] | None
    due: int | None


def user_step(suite: ModelSuite, user_id: str, features: Mapping[str, float | None],
              as_of: int, pending: Pending, memo: list[Any] | None,
              order: tuple[int, float] | None = None, cluster_due: bool = True,
              behaviour: bool = True, rescore: bool | None = None) -> Step:
    """Labels, scoring and the label snapshot for one user at ``as_of``.

    ``order`` is ``(order_ts, amount)`` for a purchase event (placed, paid or delivered
    and not cancelled; the amount the value model should learn), else None.
    ``cluster_due`` False says the caller's cluster segment cannot switch now (see
    :meth:`ModelSuite.score`). ``behaviour`` False says only time has passed (a timer):
    the scores are then refreshed only once stale (see :meth:`ModelSuite.tick`).
    ``rescore`` True or False: whether to score was decided upstream (the event worker
    of a separate scoring stage, :mod:`streams.runtime.feed`); a user without scores is
    scored either way.
    """
    cfg = suite.cfg
    label_due = next_due(pending, cfg)
    if order is None and memo and (suite.debounced(memo, as_of, behaviour)
                                   if rescore is None else not rescore) \
            and (label_due is None or label_due > as_of):
        # the common case (about two in three evaluations): nothing to count, mature
        # or score, so the user's next label timer stays where it was
        return Step(from_memo(memo), pending, memo, _NONE, None, label_due)
    matured: list[Example] = []
    if order is not None:
        pending, matured = on_order(pending, order[0], order[1], cfg)
    pending, found = on_watermark(pending, as_of, cfg)
    if found:
        matured += found
    if rescore is None:
        scores = suite.tick(user_id, features, as_of, memo or None, cluster_due, behaviour)
    elif rescore or not memo:
        scores = suite.score(compact(features), as_of, memo or None, cluster_due)
    else:
        scores = from_memo(memo)
    alert = None
    if scores.rescored:
        idle = features.get("last_seen_days") or 0.0
        if idle <= cfg.snapshot_idle_days:
            pending = add_snapshot(pending, as_of, scores.memo[M_X:], cfg)
        # An untrained model says about 0.5 for everyone: no alerts before it has learnt.
        # Churn is a customer leaving: a visitor who never ordered gets no win-back alert
        # (nor the churn_risk segments, whose rules ask for an order as well).
        if scores.entered_high and suite.learned["churn"] >= cfg.min_learned \
                and (features.get("orders_lifetime") or 0.0) >= 1.0:
            alert = churn_alert(user_id, as_of, scores.churn, scores.previous_tier,
                                suite.top_features(scores), suite.model_version)
    return Step(scores, pending, scores.memo, matured, alert, next_due(pending, cfg))
