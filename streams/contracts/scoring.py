"""Contract of ``segstream.scoring``: a user due for model scoring, from the event worker
to the scoring stage (``SEGSTREAM_MODELS_STAGE=separate``).

Why a topic between two stages: with the models inline, every event pays for label
bookkeeping, scoring, learning and the model segments in the same process, which halves
the worker's throughput. Separated, the event worker only decides *whether* a user is due
for scoring (the same debounce, staleness and materiality rules the models apply) and
sends the user's model inputs here; the scoring stage, its own consumer group with its
own state, scores, learns and owns the model segments. The two scale independently.

A request is written in the event worker's transaction (exactly-once) and keyed by
``user_id`` on the partition number of the event that caused it, so partition ``n`` of
this topic holds the users of input partition ``n``. ``event_id`` is derived from that
input's topic, partition and offset (deterministic: a re-processed input yields the same
id, which the scoring stage de-duplicates), and ``origin`` names it, so change records of
the scoring stage point at the input event like those of the inline models.

Examples
--------
>>> req = ScoringRequest(event_id="shop.orders|0|7", user_id="u1", ts=1_767_225_600_000,
...                      x=[1.0, None], extra={"spend_365d": 20.0}, rescore=True,
...                      order=OrderFact(ts=1_767_225_600_000, amount=20.0),
...                      origin=Origin(topic="shop.orders", partition=0, offset=7,
...                                    event_ts_ms=1_767_225_600_000))
>>> msgspec.json.decode(msgspec.json.encode(req), type=ScoringRequest) == req
True
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SCHEMA_VERSION = 1

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=7_258_118_400_000)]


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """The input (or timer) that made the user due: a change record's ``source``."""

    topic: str
    partition: int
    offset: int
    event_id: str | None = None
    event_ts_ms: int | None = None
    punctuation: bool = False


class OrderFact(msgspec.Struct, frozen=True, kw_only=True):
    """A placed order, for the churn and value labels of the user's pending snapshots."""

    ts: EpochMs
    amount: Annotated[float, msgspec.Meta(ge=0)]


class ScoringRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One user's model inputs at ``ts`` (event time of the evaluation).

    ``x`` holds the raw values of :data:`models.learn.inputs.MODEL_FEATURES` in order;
    ``extra`` the other features the scoring stage's segment rules read. ``rescore``
    False: only an order to count (the memo is fresh); the scoring stage then keeps the
    user's last scores. ``behaviour`` False: time passing alone (a timer).
    """

    type: Literal["scoring"] = "scoring"
    schema_version: Literal[1] = 1
    event_id: Id
    user_id: Id
    ts: EpochMs
    x: Annotated[list[float | None], msgspec.Meta(max_length=256)]
    extra: dict[str, float | None] = {}
    rescore: bool = True
    behaviour: bool = True
    order: OrderFact | None = None
    origin: Origin

    @property
    def ts_ms(self) -> int:
        return self.ts
