"""One batch of reviews through an OpenAI-compatible chat endpoint, validated.

The ``openai`` client does the HTTP (any base URL; tests inject an ``http_client``); this
module adds what a stream needs around it: its own retry loop with exponential backoff
on 429, 5xx, timeouts and connection errors (the client's retries are off so every
attempt is counted), the circuit breaker and token budget checks, and validation of the
answer against :class:`~models.text.result.Analysis` with one corrective retry for the
reviews whose answers were invalid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson

from models.text.exceptions import InvalidAnalysis
from models.text.prompts import Prompt, load_prompt
from models.text.result import Analysis, parse_analysis
from streams.enrich.breaker import STATE_VALUE, CircuitBreaker
from streams.enrich.budget import TokenBudget, estimate_tokens
from streams.enrich.config import EnrichConfig
from streams.metrics import EnrichMetrics

log = logging.getLogger(__name__)

RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection"})


@dataclass(frozen=True)
class ReviewItem:
    """A review text to analyse (already truncated to the configured length)."""

    text: str
    lang: str | None


@dataclass
class BatchOutcome:
    """Per position in the batch: an analysis, or the reason there is none."""

    results: dict[int, Analysis] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)


class _Failed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def make_openai_client(config: EnrichConfig, http_client: Any = None) -> openai.OpenAI:
    """The ``openai`` client for ``config`` (retries off: :class:`LLMClient` retries)."""
    return openai.OpenAI(
        api_key=config.api_key.get_secret_value() or "unused",
        base_url=config.base_url or None,
        timeout=config.timeout_s,
        max_retries=0,
        http_client=http_client,
    )


class LLMClient:
    """Analyse reviews in batches through ``client.chat.completions``.

    Parameters
    ----------
    client
        An ``openai.OpenAI`` (see :func:`make_openai_client`).
    clock, sleep
        Injected so tests control time; ``clock`` returns seconds.
    """

    def __init__(self, client: openai.OpenAI, config: EnrichConfig,
                 breaker: CircuitBreaker, budget: TokenBudget,
                 metrics: EnrichMetrics | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 prompt: Prompt | None = None) -> None:
        self.client = client
        self.config = config
        self.breaker = breaker
        self.budget = budget
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.prompt = prompt or load_prompt("review-analysis")

    @property
    def prompt_version(self) -> str:
        return self.prompt.version

    def analyze_batch(self, items: Sequence[ReviewItem]) -> BatchOutcome:
        """Analyses for ``items``; never raises for endpoint faults (they become
        ``failed`` reasons: ``breaker_open``, ``budget``, ``invalid`` or the error kind)."""
        out = BatchOutcome()
        pending = dict(enumerate(items))
        note: str | None = None
        for round_no in range(2):  # the answer, and one corrective retry
            if not pending:
                break
            now = self.clock()
            if not self.breaker.allow(now):
                self._fail(out, pending, "breaker_open")
                return out
            texts = [it.text for it in pending.values()]
            if not self.budget.allows(estimate_tokens(texts, len(self.prompt.text)), now):
                self._fail(out, pending, "budget")
                return out
            try:
                content = self._request(pending, note)
            except _Failed as exc:
                self.breaker.record_failure(self.clock())
                self._gauge()
                self._fail(out, pending, exc.kind)
                return out
            self.breaker.record_success()
            self._gauge()
            invalid = self._collect(content, pending, out)
            if invalid and self.metrics:
                self.metrics.requests.labels("invalid").inc()
            if invalid and round_no == 0:
                note = ("Your previous answer for these reviews was invalid ("
                        f"{'; '.join(sorted(set(invalid.values())))[:300]}). Answer again, "
                        "following the format exactly.")
            pending = {i: pending[i] for i in invalid}
        self._fail(out, pending, "invalid")
        return out

    # ------------------------------------------------------------------ internals
    def _fail(self, out: BatchOutcome, pending: dict[int, ReviewItem], reason: str) -> None:
        for i in pending:
            out.failed[i] = reason

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.breaker_state.set(STATE_VALUE[self.breaker.state])

    def _messages(self, pending: dict[int, ReviewItem], note: str | None) -> list[Any]:
        reviews = [{"id": str(i), "lang": it.lang, "text": it.text}
                   for i, it in pending.items()]
        user = orjson.dumps({"reviews": reviews}).decode()
        msgs: list[Any] = [{"role": "system", "content": self.prompt.text},
                           {"role": "user", "content": user}]
        if note:
            msgs.append({"role": "user", "content": note})
        return msgs

    def _request(self, pending: dict[int, ReviewItem], note: str | None) -> str:
        """The answer text, after retrying transient faults with exponential backoff."""
        cfg = self.config
        messages = self._messages(pending, note)
        for attempt in range(cfg.max_retries + 1):
            t0 = time.perf_counter()
            retry_after: float | None = None
            try:
                resp = self.client.chat.completions.create(
                    model=cfg.model, messages=messages, temperature=0,
                    response_format={"type": "json_object"}, timeout=cfg.timeout_s)
            except openai.APITimeoutError:
                kind = "timeout"
            except openai.APIConnectionError:
                kind = "connection"
            except openai.RateLimitError as exc:
                kind = "rate_limited"
                retry_after = _retry_after(exc.response.headers.get("retry-after"))
            except openai.InternalServerError:
                kind = "server_error"
            except openai.APIStatusError as exc:
                kind = "server_error" if exc.status_code >= 500 else "rejected"
            else:
                self._observe("ok", t0)
                self._charge(resp)
                content = resp.choices[0].message.content if resp.choices else None
                return content or ""
            self._observe(kind, t0)
            if kind not in RETRYABLE or attempt == cfg.max_retries:
                raise _Failed(kind)
            delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** attempt)
            if retry_after is not None:
                delay = min(cfg.backoff_max_s, max(delay, retry_after))
            log.info("llm %s, retry %d in %.2fs", kind, attempt + 1, delay)
            self.sleep(delay)
        raise _Failed("server_error")  # unreachable: the loop returns or raises

    def _observe(self, outcome: str, t0: float) -> None:
        if self.metrics is None:
            return
        self.metrics.requests.labels(outcome).inc()
        self.metrics.latency.observe(time.perf_counter() - t0)
        if outcome != "ok":
            self.metrics.errors.labels(outcome).inc()

    def _charge(self, resp: Any) -> None:
        usage = getattr(resp, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = self.budget.charge(prompt, completion, self.clock())
        if self.metrics:
            self.metrics.tokens.labels("prompt").inc(prompt)
            self.metrics.tokens.labels("completion").inc(completion)
            self.metrics.cost.inc(cost)

    def _collect(self, content: str, pending: dict[int, ReviewItem], out: BatchOutcome
                 ) -> dict[int, str]:
        """Store valid answers in ``out``; return the invalid positions with reasons."""
        try:
            doc = orjson.loads(content)
        except orjson.JSONDecodeError:
            return dict.fromkeys(pending, "the answer is not JSON")
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            return dict.fromkeys(pending, 'the answer has no "results" list')
        by_id: dict[str, Any] = {}
        for r in results:
            if isinstance(r, dict) and "id" in r:
                by_id[str(r["id"])] = r
        invalid: dict[int, str] = {}
        for i in pending:
            r = by_id.get(str(i))
            if r is None:
                invalid[i] = f"no result for id {i}"
                continue
            try:
                out.results[i] = parse_analysis({k: v for k, v in r.items() if k != "id"})
            except InvalidAnalysis as exc:
                invalid[i] = f"id {i}: {exc.detail}"[:200]
        return invalid


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in seconds form (dates are ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
