"""The event worker's side of a separate scoring stage: which users to send for scoring.

Why here and not in the scoring stage: the scoring stage sees only what is sent to it,
so the event worker applies the models' own rules (:mod:`models.learn.debounce`) against
a memo of what it last sent (``UserState.fed``: ``[sent_at_ms, *x]``). It sends a user
exactly when the inline models would rescore them, plus every placed order (the pending
churn and value labels count orders), and nothing else. About one evaluation in three
is sent on simulator traffic (half as many requests as input events); each request is
about 480 bytes of JSON.

Examples
--------
>>> from models.learn.config import ModelConfig
>>> from streams.features.state import UserState
>>> feed = ScoringFeed(ModelConfig(debounce_s=86_400), extra=("spend_365d", "clicks_1h"))
>>> state, f = UserState(), {"orders_lifetime": 1.0, "clicks_1h": 4.0}
>>> origin = {"topic": "shop.clicks", "partition": 0, "offset": 3}
>>> req = feed.offer("u1", state, f, 1_000, None, True, origin)
>>> req["rescore"], req["x"][MODEL_FEATURES.index("orders_lifetime")], req["extra"]
(True, 1.0, {'clicks_1h': 4.0})
>>> feed.offer("u1", state, f, 2_000, None, True, origin) is None    # debounced
True
>>> feed.offer("u1", state, f, 3_000, (3_000, 9.5), True, origin)["rescore"]   # an order
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from models.learn.config import ModelConfig
from models.learn.debounce import due
from models.learn.inputs import MODEL_FEATURES, compact
from streams.features.state import UserState


class ScoringFeed:
    """Decide, per evaluation of a user, whether the scoring stage must see it.

    Parameters
    ----------
    cfg
        The models' configuration (debounce, staleness, materiality), the same the
        scoring stage runs with.
    extra
        Features besides the model inputs that the scoring stage's segment rules read.
    """

    def __init__(self, cfg: ModelConfig, extra: Iterable[str] = ()) -> None:
        self.cfg = cfg
        self.extra = tuple(sorted(set(extra) - set(MODEL_FEATURES)))
        # read once: offer runs on every evaluation and mostly stops at the first check
        self._debounce_ms = cfg.debounce_ms
        self._staleness_ms = cfg.max_staleness_ms

    def offer(self, user_id: str, state: UserState, features: Mapping[str, float | None],
              as_of: int, order: tuple[int, float] | None, behaviour: bool,
              origin: Mapping[str, Any]) -> dict[str, Any] | None:
        """The scoring request for this evaluation (a JSON-ready dict), or None.

        Updates ``state.fed`` when the request rescores, as the models update their memo.
        """
        fed = state.fed
        # debounced (models.learn.debounce.debounced, inlined: the common case)
        held = bool(fed) and as_of - fed[0] < self._staleness_ms and (
            not behaviour or as_of - fed[0] < self._debounce_ms)
        if held and order is None:
            return None
        x = compact(features)
        rescore = not held and due(self.cfg, fed[0] if fed else None, fed[1:], x, as_of)
        if not rescore and order is None:
            return None
        if rescore:
            state.fed = [as_of, *x]
        return {
            "type": "scoring",
            "schema_version": 1,
            "event_id": f"{origin['topic']}|{origin['partition']}|{origin['offset']}",
            "user_id": user_id,
            "ts": as_of,
            "x": x,
            "extra": {name: features.get(name) for name in self.extra},
            "rescore": rescore,
            "behaviour": behaviour,
            "order": {"ts": order[0], "amount": order[1]} if order is not None else None,
            "origin": origin,
        }
