"""What happens to one valid event, independent of where it came from.

The Kafka worker and the in-process ``replay`` both call :meth:`Processor.process`, so
the embedded mode computes exactly what the streaming mode does. The processor owns no
state: the caller hands in the user's state and gets back the outputs to publish.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input came from; part of every output's deterministic id."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Result:
    """The outputs of one event: change records (``segments.changes``) and, when the
    membership changed, the user's new current record (``segments.current``).

    ``duplicate`` marks an event whose id the user's state has already seen: nothing
    changed and nothing is to be published.
    """

    state: UserState
    changes: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    duplicate: bool = False
    # churn alerts to publish and label examples that matured (for the models to learn)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    matured: list[Any] = field(default_factory=list)


_DAY = 86_400_000
_ACTIVITY_SPANS = tuple(d * _DAY for d in (1, 7, 30, 60, 90, 365))
_ORDER_SPANS = tuple(d * _DAY for d in (30, 60, 90, 365))
_FIRST_ORDER_SPANS = (30 * _DAY, 90 * _DAY)


def _last_order_ts(state: UserState) -> int:
    if not state.orders:
        return 0
    return max(o[O_FIRST_TS] for o in state.orders.values())


def iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        self._profile_cache: dict[tuple[int, int], list[dict[str, Any]]] = {}

    def process(self, state: UserState | None, event: Event, source: Source) -> Result:
        """Return the new state and outputs; raise ``InvalidEvent('late')`` for late data.

        An event id the user's state has seen within the de-duplication window yields
        ``Result(duplicate=True)`` and changes nothing (producers retry, pipelines replay).
        """
        ts = event.ts_ms
        if state is not None:
            if self.dedupe_max_ids and any(e[1] == event.event_id for e in state.seen):
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
        assert self.models is not None
        held = state.cluster
        min_ms = self.models.cfg.cluster_min_days * 86_400_000
        if cluster >= 0 and (not held or (cluster != held[0] and as_of - held[1] >= min_ms)):
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
        if self.models is not None:
            window_due = self.next_timer(state, due - 1)
            if window_due != due:
                return self._mature_labels(state, due, window_due)
        origin = {"topic": "timer", "partition": -1, "offset": due, "event_id": None,
                  "event_ts_ms": None, "punctuation": True}
        return self._evaluate(user_id, state, max(due, state.last_ts),
                              Source("timer", -1, due), origin)

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
        for base, spans in ((state.last_ts, _ACTIVITY_SPANS),
                            (_last_order_ts(state), _ORDER_SPANS),
                            (state.first_order_ts, _FIRST_ORDER_SPANS)):
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
        return self._evaluate(user_id, state, max(as_of, state.last_ts), source, origin)

    def _evaluate(self, user_id: str, state: UserState, as_of: int, source: Source,
                  origin: dict[str, Any], order: tuple[int, float] | None = None) -> Result:
        features = vector(state, as_of, self.feature_config)
        due = self.next_timer(state, as_of)
        step = None
        if self.models is not None:
            step = user_step(self.models, user_id, features, as_of, state.pending,
                             state.scored or None, order)
            state.pending, state.scored = step.pending, step.memo
            features.update(step.scores.features())
            features["cluster"] = float(self._held_cluster(state, step.scores.cluster, as_of))
            learned, floor = self.models.learned, self.models.cfg.min_learned
            if learned["churn"] < floor:
                features["churn_score"] = None  # untrained: no tier, no alert
                step.alert = None
            if learned["value"] < floor:
                features["value_pct"] = None
            if step.due:
                due = min(due, step.due) if due else step.due
        found = self.policy.evaluate(state.segments, state.exited, features, as_of)
        state.timer_due = due
        result = Result(state)
        if step is not None:
            result.matured = step.matured
            if step.alert is not None:
                result.alerts.append(step.alert)
        if not found:
            return result
        scores = step.scores.as_dict() if step is not None else {}
        model_version = self.models.model_version if self.models is not None \
            else self.model_version
        members = sorted(state.segments)
        for ch in found:
            rec: dict[str, Any] = {
                "event_id": change_id(source, user_id, ch.segment, ch.change),
                "schema_version": 1,
                "user_id": user_id,
                "segment": ch.segment,
                "change": ch.change,
                "at": iso(as_of),
                "at_ms": as_of,
                "reasons": [r.as_dict() for r in ch.reasons],
                "segments": members,
                "scores": scores,
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
            result.changes.append(rec)
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
