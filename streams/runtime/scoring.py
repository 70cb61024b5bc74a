"""The scoring stage's processor: model steps and model segments from scoring requests.

Why a subclass of :class:`~streams.runtime.processor.Processor`: a scoring request is an
evaluation of the event worker carried over (the features it computed, the order it saw,
the input it came from), so the step after it is the inline one: labels, scoring (as
the request says), the model segments, change records, alerts. What differs is where
the features come from (the request, not a feature state) and the timers: this stage
holds no feature windows, only the label snapshots that fall due.

The user state here holds only what the models need: the pending labels, the score
memo, the held cluster, the model segments, and the request ids seen (de-duplication).

Examples
--------
>>> from models.learn.config import ModelConfig
>>> from models.learn.suite import ModelSuite
>>> from models.segments.policy import SegmentPolicy
>>> from streams.contracts.scoring import Origin, ScoringRequest
>>> policy = SegmentPolicy.from_dict({"version": "v", "segments": {"risky": {
...     "enter": ["churn_score >= 0"], "exit": ["churn_score < 0"]}}},
...     ["churn_score", "value_pct", "cluster"])
>>> suite = ModelSuite(ModelConfig(min_learned=0))
>>> proc = ScoringProcessor(policy, suite)
>>> req = ScoringRequest(event_id="shop.clicks|0|5", user_id="u1", ts=86_400_000,
...     x=[1.0] * len(MODEL_FEATURES), origin=Origin(topic="shop.clicks", partition=0,
...     offset=5))
>>> r = proc.process(None, req, Source("segstream.scoring", 0, 0))
>>> [(c["segment"], c["change"], c["source"]["offset"]) for c in r.changes]
[('risky', 'entered', 5)]
>>> proc.process(r.state, req, Source("segstream.scoring", 0, 1)).duplicate
True
"""

from __future__ import annotations

from typing import Any

from models.learn.inputs import MODEL_FEATURES
from models.learn.suite import ModelSuite
from models.segments.policy import SegmentPolicy
from streams.contracts.scoring import ScoringRequest
from streams.features.state import UserState
from streams.runtime.processor import Processor, Result, Source


class ScoringProcessor(Processor):
    """See the module docstring; ``policy`` holds the segments on model scores."""

    def __init__(self, policy: SegmentPolicy, models: ModelSuite, *,
                 dedupe_window_ms: int = 86_400_000, dedupe_max_ids: int = 512) -> None:
        super().__init__(policy, lateness_ms=0, dedupe_window_ms=dedupe_window_ms,
                         dedupe_max_ids=dedupe_max_ids, models=models)
        # No feature windows here: a timer is always a label snapshot falling due.
        self._spans = ((), (), ())

    def process(self, state: UserState | None, event: Any, source: Source) -> Result:
        """Fold one :class:`ScoringRequest` (``event``) into the user's model state.

        ``source`` (where the request was read) only serves de-duplication; change ids
        and records name the input the request came from, as inline ones do.
        """
        req: ScoringRequest = event
        if state is None:
            state = UserState(first_ts=req.ts)
        elif self.dedupe_max_ids:
            event_id = req.event_id
            for e in state.seen:
                if e[1] == event_id:
                    return Result(state, duplicate=True)
        if req.ts > state.last_ts:
            state.last_ts = req.ts
        if self.dedupe_max_ids:
            self._remember(state, req.ts, req.event_id)
        features: dict[str, float | None] = dict(zip(MODEL_FEATURES, req.x, strict=True))
        features.update(req.extra)
        o = req.origin
        origin: dict[str, Any] = {"topic": o.topic, "partition": o.partition,
                                  "offset": o.offset, "event_id": o.event_id,
                                  "event_ts_ms": o.event_ts_ms}
        if o.punctuation:
            origin["punctuation"] = True
        order = (req.order.ts, req.order.amount) if req.order is not None else None
        return self._evaluate(req.user_id, state, req.ts, Source(o.topic, o.partition, o.offset),
                              origin, order, behaviour=req.behaviour, features=features,
                              rescore=req.rescore)
