"""``segstream segments describe``: cluster profiles to marketer-readable paragraphs.

Descriptions are cached in a JSON file keyed by :func:`models.text.describe.profile_key`,
so the LLM is asked again only when a cluster's profile shifts; without an LLM the
template description is used (and cached the same way).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import openai

from models.text.describe import Complete, llm_description, profile_key, template_description
from models.text.exceptions import TextModelError
from streams.enrich.config import EnrichConfig
from streams.enrich.llm import make_openai_client
from streams.exceptions import ConfigError


def make_complete(config: EnrichConfig, http_client: Any = None) -> Complete:
    """A ``complete(system, user)`` over the configured endpoint; endpoint failures become
    :class:`TextModelError` (and so the template)."""
    client = make_openai_client(config, http_client)

    def complete(system: str, user: str) -> str:
        try:
            resp = client.with_options(max_retries=config.max_retries).chat.completions.create(
                model=config.model, temperature=0.2,
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": user}])
        except openai.OpenAIError as exc:
            raise TextModelError(f"description request failed: {type(exc).__name__}") from None
        return (resp.choices[0].message.content or "") if resp.choices else ""

    return complete


class DescriptionCache:
    """``{profile_key: {"cluster", "text", "source"}}`` in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                self.entries = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"description cache {path} is not JSON ({exc}); delete it"
                                  ) from None

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.entries, ensure_ascii=False, indent=1,
                                            sort_keys=True) + "\n", encoding="utf-8")


def describe_profiles(profiles: Iterable[Mapping[str, Any]], complete: Complete | None,
                      cache: DescriptionCache, docs: Mapping[str, str] | None = None
                      ) -> list[dict[str, Any]]:
    """One ``{"cluster", "text", "source", "cached"}`` per profile.

    A cached template text is replaced once an LLM is configured.
    """
    out = []
    for profile in profiles:
        key = profile_key(profile)
        hit = cache.entries.get(key)
        if hit is not None and (complete is None or hit.get("source") != "template"):
            out.append({**hit, "cached": True})
            continue
        if complete is None:
            text, source = template_description(profile, docs), "template"
        else:
            text, source = llm_description(profile, complete, docs)
        entry = {"cluster": int(profile["cluster"]), "text": text, "source": source}
        cache.entries[key] = entry
        out.append({**entry, "cached": False})
    cache.save()
    return out
