"""Settings of the LLM enrichment stage, read once from the environment at the CLI.

The stage is off unless an endpoint is configured: ``SEGSTREAM_LLM_MODEL`` plus
``SEGSTREAM_LLM_BASE_URL`` (any OpenAI-compatible server) and/or ``OPENAI_API_KEY``
(``SEGSTREAM_LLM_API_KEY`` also works). Every other knob has a default.

Examples
--------
>>> c = EnrichConfig.from_env({"SEGSTREAM_LLM_MODEL": "m",
...                            "SEGSTREAM_LLM_BASE_URL": "http://127.0.0.1:8000/v1"})
>>> c.enabled, c.batch_size, c.api_key
(True, 8, Secret(''))
>>> EnrichConfig.from_env({}).enabled
False
>>> EnrichConfig.from_env({"SEGSTREAM_LLM_MODEL": "m", "OPENAI_API_KEY": "k",
...     "SEGSTREAM_LLM_CONCURRENCY": "0", "SEGSTREAM_LLM_TIMEOUT_S": "soon"})
Traceback (most recent call last):
...
streams.exceptions.ConfigError: SEGSTREAM_LLM_CONCURRENCY: must be >= 1 (got 0); \
SEGSTREAM_LLM_TIMEOUT_S: 'soon' is not a number
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.config import Secret
from streams.exceptions import ConfigError


@dataclass(frozen=True)
class EnrichConfig:
    """Everything the enrichment stage and the segment describer need to know."""

    model: str = ""
    base_url: str = ""
    api_key: Secret = field(default_factory=lambda: Secret(""))
    topic_enriched: str = "shop.reviews.enriched"
    group_id: str = "segstream-enrich"
    batch_size: int = 8
    concurrency: int = 4
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    cache_size: int = 100_000
    cache_ttl_s: float = 7 * 86_400.0
    error_ttl_s: float = 60.0
    tokens_per_hour: int = 0
    tokens_per_day: int = 0
    cost_per_1k_input: float = 0.0
    cost_per_1k_output: float = 0.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    max_text_chars: int = 2_000
    poll_batch: int = 200
    max_event_bytes: int = 1_000_000

    @property
    def enabled(self) -> bool:
        """An LLM is configured (a model and somewhere to send it)."""
        return bool(self.model and (self.base_url or self.api_key))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EnrichConfig:
        """Read ``SEGSTREAM_LLM_*`` / ``SEGSTREAM_ENRICH_*``; every mistake is reported at
        once in one :class:`ConfigError`."""
        errors: list[str] = []
        kw: dict[str, Any] = {}

        def get(var: str, key: str, conv: Callable[[str], Any], low: float | None = None
                ) -> None:
            raw = env.get(var)
            if raw is None or raw == "":
                return
            try:
                value = conv(raw)
            except ValueError:
                kind = "an integer" if conv is int else "a number"
                errors.append(f"{var}: {raw!r} is not {kind}")
                return
            if low is not None and value < low:
                errors.append(f"{var}: must be >= {low:g} (got {raw})")
                return
            kw[key] = value

        kw["model"] = env.get("SEGSTREAM_LLM_MODEL", "").strip()
        kw["base_url"] = env.get("SEGSTREAM_LLM_BASE_URL", "").strip()
        kw["api_key"] = Secret(env.get("SEGSTREAM_LLM_API_KEY") or env.get("OPENAI_API_KEY")
                               or "")
        if kw["base_url"] and not kw["base_url"].startswith(("http://", "https://")):
            errors.append("SEGSTREAM_LLM_BASE_URL: must start with http:// or https://")
        for var, key in (("SEGSTREAM_TOPIC_ENRICHED", "topic_enriched"),
                         ("SEGSTREAM_ENRICH_GROUP_ID", "group_id")):
            if env.get(var):
                kw[key] = env[var].strip()
        get("SEGSTREAM_LLM_BATCH_SIZE", "batch_size", int, 1)
        get("SEGSTREAM_LLM_CONCURRENCY", "concurrency", int, 1)
        get("SEGSTREAM_LLM_TIMEOUT_S", "timeout_s", float, 0.1)
        get("SEGSTREAM_LLM_MAX_RETRIES", "max_retries", int, 0)
        get("SEGSTREAM_LLM_BACKOFF_S", "backoff_s", float, 0)
        get("SEGSTREAM_LLM_BACKOFF_MAX_S", "backoff_max_s", float, 0)
        get("SEGSTREAM_LLM_CACHE_SIZE", "cache_size", int, 0)
        get("SEGSTREAM_LLM_CACHE_TTL_S", "cache_ttl_s", float, 0)
        get("SEGSTREAM_LLM_ERROR_TTL_S", "error_ttl_s", float, 0)
        get("SEGSTREAM_LLM_TOKENS_PER_HOUR", "tokens_per_hour", int, 0)
        get("SEGSTREAM_LLM_TOKENS_PER_DAY", "tokens_per_day", int, 0)
        get("SEGSTREAM_LLM_COST_PER_1K_INPUT", "cost_per_1k_input", float, 0)
        get("SEGSTREAM_LLM_COST_PER_1K_OUTPUT", "cost_per_1k_output", float, 0)
        get("SEGSTREAM_LLM_BREAKER_FAILURES", "breaker_failures", int, 1)
        get("SEGSTREAM_LLM_BREAKER_RESET_S", "breaker_reset_s", float, 0)
        get("SEGSTREAM_LLM_MAX_TEXT_CHARS", "max_text_chars", int, 16)
        get("SEGSTREAM_ENRICH_POLL_BATCH", "poll_batch", int, 1)
        get("SEGSTREAM_MAX_EVENT_BYTES", "max_event_bytes", int, 1024)
        if kw["model"] and not (kw["base_url"] or kw["api_key"]):
            errors.append("SEGSTREAM_LLM_MODEL is set but neither SEGSTREAM_LLM_BASE_URL nor "
                          "OPENAI_API_KEY is: set the endpoint or its key")
        if errors:
            raise ConfigError("; ".join(errors))
        return cls(**kw)
