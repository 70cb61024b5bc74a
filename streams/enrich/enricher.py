"""Reviews in, one enriched record per review out: cache, LLM batches, local fallbacks.

Independent of Kafka (the stage's loop feeds it), so its fault behaviour is tested
directly. Identical texts within a batch are sent once; cached answers are not sent at
all; the misses go out in batches of ``batch_size`` on at most ``concurrency`` threads.
Whatever the endpoint does, each review gets a record: the LLM's analysis, or the local
analyzer's with the reason in ``fallback``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from models.text.analyzer import Analyzer
from models.text.result import Analysis
from streams.contracts.enriched import EnrichedReview, Origin
from streams.contracts.events import ReviewEvent
from streams.enrich.cache import TTLCache, text_key
from streams.enrich.config import EnrichConfig
from streams.enrich.llm import BatchOutcome, LLMClient, ReviewItem
from streams.metrics import EnrichMetrics

# Reasons that say nothing about the text itself are not cached.
_TRANSIENT = frozenset({"breaker_open", "budget"})


@dataclass(frozen=True)
class CachedFailure:
    """A text the endpoint recently failed on, remembered for ``error_ttl_s``."""

    reason: str


class Enricher:
    """Turns reviews into :class:`EnrichedReview` records (call :meth:`close` at the end)."""

    def __init__(self, llm: LLMClient, local: Analyzer, config: EnrichConfig,
                 metrics: EnrichMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.llm = llm
        self.local = local
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.cache: TTLCache[Analysis | CachedFailure] = TTLCache(config.cache_size)
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                        thread_name_prefix="llm")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def enrich(self, reviews: Sequence[tuple[ReviewEvent, Origin | None]]
               ) -> list[EnrichedReview]:
        """One record per review, in input order."""
        cfg = self.config
        now = self.clock()
        keys: list[str | None] = []
        answers: dict[str, Analysis | CachedFailure] = {}
        misses: dict[str, ReviewItem] = {}
        for ev, _ in reviews:
            text = ev.text.strip()[: cfg.max_text_chars]
            if not text:
                keys.append(None)
                continue
            key = text_key(text, ev.lang, cfg.model, self.llm.prompt_version)
            keys.append(key)
            if key in answers or key in misses:
                continue
            hit = self.cache.get(key, now)
            if hit is None:
                misses[key] = ReviewItem(text, ev.lang)
                self._count_cache("miss")
            else:
                answers[key] = hit
                self._count_cache("error_hit" if isinstance(hit, CachedFailure) else "hit")
        answers.update(self._ask(misses))
        out = []
        for (ev, origin), k in zip(reviews, keys, strict=True):
            answer = answers.get(k) if k is not None else None
            out.append(self._record(ev, origin, answer or CachedFailure("no_text")))
        return out

    # ------------------------------------------------------------------ internals
    def _ask(self, misses: dict[str, ReviewItem]) -> dict[str, Analysis | CachedFailure]:
        if not misses:
            return {}
        keys = list(misses)
        size = self.config.batch_size
        chunks = [keys[i:i + size] for i in range(0, len(keys), size)]
        outcomes: list[BatchOutcome] = list(self._pool.map(
            lambda ks: self.llm.analyze_batch([misses[k] for k in ks]), chunks))
        now = self.clock()
        answers: dict[str, Analysis | CachedFailure] = {}
        for ks, outcome in zip(chunks, outcomes, strict=True):
            for i, key in enumerate(ks):
                result = outcome.results.get(i)
                if result is not None:
                    answers[key] = result
                    self.cache.put(key, result, self.config.cache_ttl_s, now)
                    continue
                failure = CachedFailure(outcome.failed.get(i, "invalid"))
                answers[key] = failure
                if failure.reason not in _TRANSIENT:
                    self.cache.put(key, failure, self.config.error_ttl_s, now)
        return answers

    def _record(self, ev: ReviewEvent, origin: Origin | None,
                answer: Analysis | CachedFailure) -> EnrichedReview:
        if isinstance(answer, Analysis):
            source, analysis, fallback = "llm", answer, None
        else:
            source, fallback = "local", answer.reason
            analysis = self.local.analyze(ev.text, ev.lang)
            if self.metrics:
                self.metrics.fallbacks.labels(answer.reason).inc()
        if self.metrics:
            self.metrics.reviews.labels(source).inc()
        return EnrichedReview(
            event_id=ev.event_id, user_id=ev.user_id, ts=ev.ts_ms,
            source="llm" if source == "llm" else "local", analysis=analysis,
            model=self.config.model or None, prompt_version=self.llm.prompt_version,
            fallback=fallback, enriched_at=int(self.clock() * 1000), origin=origin,
            text=ev.text)

    def _count_cache(self, result: str) -> None:
        if self.metrics:
            self.metrics.cache.labels(result).inc()
