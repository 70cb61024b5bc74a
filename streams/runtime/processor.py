"""What happens to one valid event, independent of where it came from.

The Kafka worker and the in-process ``replay`` both call :meth:`Processor.process`, so
the embedded mode computes exactly what the streaming mode does. The processor owns no
state: the caller hands in the user's state and gets back the outputs to publish.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from models.learn.labels import next_due, on_watermark
from models.learn.step import user_step
from models.learn.suite import ModelSuite
from models.segments.policy import SegmentPolicy
from models.text.local import LocalAnalyzer
from streams.contracts.enriched import EnrichedReview
from streams.contracts.events import Event, OrderEvent, ReviewEvent
from streams.exceptions import InvalidEvent
from streams.features.state import O_FIRST_TS, UserState
from streams.features.update import FeatureConfig, apply_enrichment, update
from streams.features.vector import vector
from streams.runtime.feed import ScoringFeed


class Source(NamedTuple):
    """Where an input came from; part of every output's deterministic id.

    A named tuple rather than a frozen dataclass: one is built per event, and a frozen
    dataclass pays an ``object.__setattr__`` per field.
    """

    topic: str
    partition: int
    offset: int


_NONE: list[Any] = []  # shared empty default of Result lists; never mutated


class Result:
    """The outputs of one event: change records (``segments.changes``) and, when the
    membership changed, the user's new current record (``segments.current``).

    ``duplicate`` marks an event whose id the user's state has already seen: nothing
    changed and nothing is to be published. ``alerts`` are churn alerts to publish and
    ``matured`` the label examples for the models to learn; ``requests`` the scoring
    requests for a separate scoring stage (:mod:`streams.runtime.feed`).

    A plain slotted class: one is built per event, and most carry empty lists, which
    share one (never mutated) list instead of allocating three.
    """

    __slots__ = ("alerts", "changes", "current", "duplicate", "matured", "requests", "state")

    def __init__(self, state: UserState, *, duplicate: bool = False,
                 matured: list[Any] = _NONE) -> None:
        self.state = state
        self.changes: list[dict[str, Any]] = _NONE
        self.current: dict[str, Any] | None = None
        self.duplicate = duplicate
        self.alerts: list[dict[str, Any]] = _NONE
        self.matured = matured
        self.requests: list[dict[str, Any]] = _NONE


_DAY = 86_400_000
_ACTIVITY_SPANS = tuple(d * _DAY for d in (1, 7, 30, 60, 90, 365))
_ORDER_SPANS = tuple(d * _DAY for d in (30, 60, 90, 365))
_FIRST_ORDER_SPANS = (30 * _DAY, 90 * _DAY)
_TEXT = ("text_", "sentiment_", "negative_review_", "complaints_", "quality_", "price_",
         "logistics_", "service_", "packaging_")
# Which timer span (days after the last activity / last order / first order) can move a
# feature; day counts (``recency_days`` ...) can cross any threshold, so all spans.
_ACTIVITY_DAYS = {"clicks_24h": (1,), "sessions_24h": (1,), "clicks_1h": (1,),
                  "sessions_1h": (1,), "clicks_7d": (7,), "sessions_7d": (7,),
                  "reviews_365d": (365,), "avg_rating_365d": (365,),
                  # a cart counts once its conversion window (a day) has closed
                  "carts_30d": (1, 30), "cart_abandonment_rate_30d": (1, 30),
                  "last_seen_days": (1, 7, 30, 60, 90, 365),
                  "tenure_days": (1, 7, 30, 60, 90, 365)}
_ORDER_DAYS = {"orders_30d": (30,), "spend_30d": (30,), "orders_90d": (90,),
               "spend_90d": (90,), "recency_days": (30, 60, 90, 365)}
_STATIC = {"orders_lifetime", "reviews_lifetime"}


def timer_spans(features: set[str] | None
                ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The spans after the last activity, last order and first order at which time
    alone can change one of ``features`` (all spans for None or an unknown name).

    Why: a timer firing costs a full evaluation; a policy that reads no one-day window
    needs no timer a day after every user's last click.

    >>> [tuple(s // _DAY for s in spans) for spans in timer_spans({"clicks_7d",
    ...                                                            "recency_days"})]
    [(7,), (30, 60, 90, 365), ()]
    """
    if features is None:
        return _ACTIVITY_SPANS, _ORDER_SPANS, _FIRST_ORDER_SPANS
    activity: set[int] = set()
    orders: set[int] = set()
    first: set[int] = set()
    for name in features:
        if name in _ACTIVITY_DAYS:
            activity.update(_ACTIVITY_DAYS[name])
        elif name in _ORDER_DAYS:
            orders.update(_ORDER_DAYS[name])
        elif name == "first_order_days":
            first.update((30, 90))
        elif name.endswith("_30d"):
            activity.add(30)  # click, session and cart windows
        elif name.endswith("_365d") or name.startswith("pay_share_"):
            orders.add(365)
        elif name.startswith(_TEXT) and name.endswith(("_90d", "_14d")):
            activity.add(90)
        elif name not in _STATIC:
            return _ACTIVITY_SPANS, _ORDER_SPANS, _FIRST_ORDER_SPANS
    return (tuple(d * _DAY for d in sorted(activity)), tuple(d * _DAY for d in sorted(orders)),
            tuple(d * _DAY for d in sorted(first)))


def _last_order_ts(state: UserState) -> int:
    if not state.orders:
        return 0
    return max(o[O_FIRST_TS] for o in state.orders.values())


_DAY_PREFIX: dict[int, str] = {}
_ISO: dict[int, str] = {}
_ISO_MAX = 1 << 17


def iso(ms: int) -> str:
    """``2026-12-05T01:02:03.004Z``, memoised.

    Why: every change and current record formats the ``since`` of each of the user's
    segments, the same few instants over and over; with the models on (cluster and churn
    tier segments) that was 130k formattings per 100k events.

    >>> iso(0), iso(86_399_999)
    ('1970-01-01T00:00:00.000Z', '1970-01-01T23:59:59.999Z')
    """
    text = _ISO.get(ms)
    if text is not None:
        return text
    if len(_ISO) >= _ISO_MAX:
        _ISO.clear()
    day, rest = divmod(ms, _DAY)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        if len(_DAY_PREFIX) > 4096:
            _DAY_PREFIX.clear()
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime(
            "%Y-%m-%dT")
    sec, milli = divmod(rest, 1000)
    h, sec = divmod(sec, 3600)
    m, sec = divmod(sec, 60)
    text = _ISO[ms] = f"{prefix}{h:02d}:{m:02d}:{sec:02d}.{milli:03d}Z"
    return text


def change_id(source: Source, user_id: str, segment: str, change: str) -> str:
    """Deterministic id: the same input always yields the same output id."""
    raw = f"{source.topic}|{source.partition}|{source.offset}|{user_id}|{segment}|{change}"
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


class Processor:
    """Fold an event into state, evaluate the segment policy, describe the changes.

    Parameters
    ----------
    policy
        The rule segments.
    lateness_ms
        Events older than the user's latest event time minus this are ``late``.
    model_version
        Stamped on every change (``None`` while no learned model takes part).
    """

    def __init__(
        self,
        policy: SegmentPolicy,
        lateness_ms: int,
        model_version: str | None = None,
        *,
        dedupe_window_ms: int = 86_400_000,
        dedupe_max_ids: int = 512,
        timer_granularity_ms: int = 86_400_000,
        analyzer: LocalAnalyzer | None = None,
        learn_text: bool = True,
        models: ModelSuite | None = None,
        feed: ScoringFeed | None = None,
    ) -> None:
        self.policy = policy
        self.lateness_ms = lateness_ms
        self.feature_config = FeatureConfig(lateness_ms=lateness_ms)
        self.model_version = model_version
        self.dedupe_window_ms = dedupe_window_ms
        self.dedupe_max_ids = dedupe_max_ids
        self.timer_granularity_ms = timer_granularity_ms
        self.analyzer = analyzer
        self.learn_text = learn_text
        self.models = models
        self.feed = feed
        self._profile_cache: dict[tuple[int, int], list[dict[str, Any]]] = {}
        # The models read every feature; the rules alone only those they name.
        self._spans = timer_spans(None if models is not None or feed is not None
                                  else policy.features())
        self._cluster_hold_ms = models.cfg.cluster_min_days * 86_400_000 if models else 0

    def warm_up(self) -> None:
        """Load what the first event would otherwise load: the jieba dictionary, the models'
        compiled kernels."""
        if self.analyzer is not None:
            self.analyzer.tokenizer.warm_up()
        if self.models is not None:
            self.models.warm_up()

    def process(self, state: UserState | None, event: Event, source: Source) -> Result:
        """Return the new state and outputs; raise ``InvalidEvent('late')`` for late data.

        An event id the user's state has seen within the de-duplication window yields
        ``Result(duplicate=True)`` and changes nothing (producers retry, pipelines replay).
        """
        ts = event.ts_ms
        if state is not None:
            if self.dedupe_max_ids:
                event_id = event.event_id
                for e in state.seen:
                    if e[1] == event_id:
                        return Result(state, duplicate=True)
            if ts < state.last_ts - self.lateness_ms:
                raise InvalidEvent(
                    "late",
                    f"event time {iso(ts)} is more than {self.lateness_ms // 1000}s behind "
                    f"the user's latest event {iso(state.last_ts)}",
                )
        analysis = None
        if self.analyzer is not None and isinstance(event, ReviewEvent) and event.text:
            if self.learn_text:
                # the analysis comes before the update: a review never grades itself
                analysis = self.analyzer.analyze_and_learn(event.text, event.rating, event.lang)
            else:
                analysis = self.analyzer.analyze(event.text, event.lang)
        state = update(state, event, self.feature_config, analysis=analysis)
        if self.dedupe_max_ids:
            self._remember(state, ts, event.event_id)
        origin = {"topic": source.topic, "partition": source.partition,
                  "offset": source.offset, "event_id": event.event_id, "event_ts_ms": ts}
        order = ((ts, float(event.total)) if isinstance(event, OrderEvent)
                 and event.status == "placed" else None)
        return self._evaluate(event.user_id, state, state.last_ts, source, origin, order)

    def process_enriched(self, state: UserState, enriched: EnrichedReview,
                         source: Source) -> Result:
        """Fold an LLM (or fallback) analysis of a review into the user's text features.

        Not de-duplicated by ``event_id`` (it is the review's own id) and never late: it
        replaces the local analysis of a review the state already holds, or does nothing.
        """
        if enriched.source == "llm" and self.analyzer is not None and enriched.text \
                and self.learn_text:
            self.analyzer.learn_labels(enriched.text, enriched.analysis)
        new = apply_enrichment(state, enriched, self.feature_config)
        if new is None:
            return Result(state, duplicate=True)  # the review is not (or no longer) held
        origin = {"topic": source.topic, "partition": source.partition,
                  "offset": source.offset, "event_id": enriched.event_id,
                  "event_ts_ms": enriched.ts}
        return self._evaluate(enriched.user_id, new, new.last_ts, source, origin)

    def _held_cluster(self, state: UserState, cluster: int, as_of: int) -> int:
        """The cluster the segment rules see: the model's, held for at least
        ``cluster_min_days`` so that daily feature movement does not flap the segment."""
        held = state.cluster
        if cluster >= 0 and (not held or (cluster != held[0]
                                          and as_of - held[1] >= self._cluster_hold_ms)):
            state.cluster = held = [cluster, as_of]
        return held[0] if held else -1

    def _cluster_reasons(self, cluster: int) -> list[dict[str, Any]]:
        """Profiles move slowly: recomputed once per thousand clustering steps."""
        assert self.models is not None
        epoch = self.models.learned["clusters"] // 1000
        key = (cluster, epoch)
        if key not in self._profile_cache:
            self._profile_cache = {k: v for k, v in self._profile_cache.items()
                                   if k[1] == epoch}
            self._profile_cache[key] = self.models.cluster_reasons(cluster)
        return list(self._profile_cache[key])

    def _remember(self, state: UserState, ts: int, event_id: str) -> None:
        seen = state.seen
        seen.append([ts, event_id])
        horizon = state.last_ts - self.dedupe_window_ms
        if seen[0][0] < horizon or len(seen) > self.dedupe_max_ids:
            kept = [e for e in seen if e[0] >= horizon]
            state.seen = kept[-self.dedupe_max_ids:]

    def fire_timer(self, user_id: str, state: UserState, due: int) -> Result:
        """Re-evaluate a user whose timer is due: time passing alone can change segments
        (dormant after 60 days, leaving high_activity when the week empties).

        The change ids depend only on the user and the due time, so a restarted worker
        that fires the same timer again produces the same records.
        """
        g = self.timer_granularity_ms
        if self.models is not None:
            # Window timers sit on the grid, label snapshots fall due anywhere (on the
            # grid too: a timer's rescoring takes its snapshot there). The first window
            # timer after the grid step before ``due`` says whether one is due now; the
            # earlier ones fired already, being earlier than ``due``.
            window_due = self.next_timer(state, due - (due % g or g)) if g else 0
            if window_due != due:
                return self._mature_labels(state, due, window_due)
        origin = {"topic": "timer", "partition": -1, "offset": due, "event_id": None,
                  "event_ts_ms": None, "punctuation": True}
        return self._evaluate(user_id, state, max(due, state.last_ts),
                              Source("timer", -1, due), origin, behaviour=False)

    def _mature_labels(self, state: UserState, due: int, window_due: int) -> Result:
        """A timer that is due only for label snapshots (no feature window changes now):
        mature them for the models to learn, without re-evaluating the user."""
        assert self.models is not None
        cfg = self.models.cfg
        state.pending, matured = on_watermark(state.pending, due, cfg)
        label_due = next_due(state.pending, cfg) or 0
        state.timer_due = min(t for t in (window_due, label_due) if t) \
            if window_due or label_due else 0
        return Result(state, matured=matured)

    def next_timer(self, state: UserState, as_of: int) -> int:
        """When time alone may next change this user's features: the first moment after
        ``as_of`` at which the last activity, the last order or the first order leaves
        one of the feature windows (1, 7, 30, 60, 90, 365 days), rounded up to the
        event-time grid (``timer_granularity_ms``); 0 when nothing is left to wait for.

        A handful of firings per idle user instead of one per day: the windows emptying
        is what moves a user out of activity segments, into ``dormant`` or out of
        ``new_customer``. A window that only partly empties (an old order leaving while
        newer ones stay) is seen at the next of these moments or the next event.
        """
        g = self.timer_granularity_ms
        if not g:
            return 0
        best = 0
        activity, orders, first = self._spans
        for base, spans in ((state.last_ts, activity),
                            (_last_order_ts(state) if orders else 0, orders),
                            (state.first_order_ts, first)):
            if base <= 0:
                continue
            for span in spans:
                t = base + span
                if t > as_of:
                    if not best or t < best:
                        best = t
                    break
        if not best:
            return 0
        return -(-best // g) * g if best % g else best

    def tick(self, user_id: str, state: UserState, as_of: int, source: Source) -> Result:
        """Re-evaluate a user at ``as_of`` without a new event (time passing).

        Used at the end of a replay ("as of the end of the file") so that time-based
        conditions such as dormancy hold for users whose last event lies far back.
        """
        origin = {"topic": source.topic, "partition": source.partition,
                  "offset": source.offset, "event_id": None, "event_ts_ms": None,
                  "punctuation": True}
        return self._evaluate(user_id, state, max(as_of, state.last_ts), source, origin,
                              behaviour=False)

    def _evaluate(self, user_id: str, state: UserState, as_of: int, source: Source,
                  origin: dict[str, Any], order: tuple[int, float] | None = None, *,
                  behaviour: bool = True, features: dict[str, float | None] | None = None,
                  rescore: bool | None = None) -> Result:
        """``behaviour`` False: time passing alone (a timer, a final tick); the models
        then rescore only a stale score (:meth:`ModelSuite.tick`). ``features`` and
        ``rescore`` come with a scoring request (:class:`ScoringProcessor`)."""
        if features is None:
            features = vector(state, as_of, self.feature_config)
        due = self.next_timer(state, as_of)
        step = None
        if self.models is not None:
            held = state.cluster
            # While the held cluster cannot switch, a new assignment is not needed.
            cluster_due = not held or as_of - held[1] >= self._cluster_hold_ms
            step = user_step(self.models, user_id, features, as_of, state.pending,
                             state.scored or None, order, cluster_due, behaviour, rescore)
            state.pending, state.scored = step.pending, step.memo
            scores = step.scores
            learned, floor = self.models.learned, self.models.cfg.min_learned
            # untrained: no tier (and no alert, see user_step), no value percentile
            features["churn_score"] = scores.churn if learned["churn"] >= floor else None
            features["value_pct"] = scores.value_pct if learned["value"] >= floor else None
            features["cluster"] = float(self._held_cluster(state, scores.cluster, as_of))
            if step.due:
                due = min(due, step.due) if due else step.due
        found = self.policy.evaluate(state.segments, state.exited, features, as_of)
        state.timer_due = due
        result = Result(state)
        if self.feed is not None:
            request = self.feed.offer(user_id, state, features, as_of, order, behaviour,
                                      origin)
            if request is not None:
                result.requests = [request]
        if step is not None:
            result.matured = step.matured
            if step.alert is not None:
                result.alerts = [step.alert]
        if not found:
            return result
        record_scores = step.scores.as_dict() if step is not None else {}
        model_version = self.models.model_version if self.models is not None \
            else self.model_version
        members = sorted(state.segments)
        at = iso(as_of)
        result.changes = changes = []
        for ch in found:
            rec: dict[str, Any] = {
                "event_id": change_id(source, user_id, ch.segment, ch.change),
                "schema_version": 1,
                "user_id": user_id,
                "segment": ch.segment,
                "change": ch.change,
                "at": at,
                "at_ms": as_of,
                "reasons": [r.as_dict() for r in ch.reasons],
                "segments": members,
                "scores": record_scores,
                "policy_version": self.policy.version,
                "model_version": model_version,
                "source": origin,
            }
            if ch.since is not None:
                rec["member_since"] = iso(ch.since)
            if self.models is not None and ch.segment.startswith("cluster.") \
                    and ch.change == "entered":
                # what sets the cluster apart, e.g. "discount share 0.71 vs 0.18 overall"
                rec["reasons"] += self._cluster_reasons(int(ch.segment[8:]))
            changes.append(rec)
        result.current = current_record(user_id, state, as_of, self.policy.version)
        return result


def current_record(user_id: str, state: UserState, as_of: int, policy_version: str
                   ) -> dict[str, Any]:
    """The compacted ``segments.current`` value for a user."""
    return {
        "user_id": user_id,
        "segments": {name: {"since": iso(v[0])} for name, v in sorted(state.segments.items())},
        "updated_at": iso(as_of),
        "policy_version": policy_version,
    }


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)
