"""When a user is due for scoring: the debounce, staleness and materiality rules.

Why a module of its own: two places apply the same rules. The inline models
(:meth:`models.learn.suite.ModelSuite.tick`) decide against their score memo; the event
worker of a separate scoring stage (:mod:`streams.runtime.feed`) decides against the
memo of what it last sent, so that it sends exactly the users the models would score.

Examples
--------
>>> from models.learn.config import ModelConfig
>>> cfg = ModelConfig(debounce_s=3600, max_staleness_s=86_400)
>>> debounced(cfg, 0, 60_000, behaviour=True)              # a minute later: debounced
True
>>> debounced(cfg, 0, 7_200_000, behaviour=True)           # two hours later: not
False
>>> debounced(cfg, 0, 7_200_000, behaviour=False)          # time alone: until stale
True
>>> from models.learn.inputs import MODEL_FEATURES
>>> x = [1.0] * len(MODEL_FEATURES)
>>> due(cfg, 0, x, x, 7_200_000), due(cfg, 0, x, x, 90_000_000)   # unchanged; stale
(False, True)
"""

from __future__ import annotations

from collections.abc import Sequence

from models.learn.config import ModelConfig
from models.learn.inputs import changed_materially


def debounced(cfg: ModelConfig, scored_at: int, as_of: int, behaviour: bool) -> bool:
    """True when scores of ``scored_at`` stand at ``as_of`` whatever the features: not
    stale, and either only time has passed (``behaviour`` False) or the debounce has not."""
    age = as_of - scored_at
    return age < cfg.max_staleness_ms and (not behaviour or age < cfg.debounce_ms)


def due(cfg: ModelConfig, scored_at: int | None, scored_x: Sequence[float | None],
        x: Sequence[float | None], as_of: int) -> bool:
    """Whether to score inputs ``x`` now, once :func:`debounced` said no: never scored,
    stale, or an input moved materially since ``scored_x``."""
    return scored_at is None or as_of - scored_at >= cfg.max_staleness_ms \
        or changed_materially(scored_x, x, cfg.materiality)
