"""Contract of ``shop.reviews.enriched``: one review's analysis by the LLM (or, when the
LLM could not answer, by the local analyzer), keyed by ``user_id``.

The enrichment stage produces one record per valid input review, on the partition
number the review came from, so the worker that holds the user's state consumes it.
``event_id`` is the *review's* id: the worker replaces that review's local analysis with
this one (:func:`streams.features.update.apply_enrichment`).

Regenerate the published schema with ``python -m streams.contracts.enriched``.

Examples
--------
>>> rec = EnrichedReview(event_id="r1", user_id="u1", ts=1_767_225_600_000, source="llm",
...     analysis=Analysis(lang="en", sentiment=-0.7, label="negative"),
...     model="m", prompt_version="review-analysis.v1", enriched_at=1_767_225_601_000)
>>> msgspec.json.decode(msgspec.json.encode(rec), type=EnrichedReview) == rec
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from models.text.result import Analysis

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "schemas" / f"review_enriched.v{SCHEMA_VERSION}.json"

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=7_258_118_400_000)]


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """Where the analysed review was read."""

    topic: str
    partition: Annotated[int, msgspec.Meta(ge=0)]
    offset: Annotated[int, msgspec.Meta(ge=0)]


class EnrichedReview(msgspec.Struct, frozen=True, kw_only=True):
    """The analysis of one review, with who made it and with which prompt."""

    type: Literal["review_enriched"] = "review_enriched"
    schema_version: Literal[1] = 1
    event_id: Id
    user_id: Id
    ts: EpochMs
    source: Literal["llm", "local"]
    analysis: Analysis
    model: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    prompt_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    fallback: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    enriched_at: EpochMs = 0
    origin: Origin | None = None
    text: Annotated[str, msgspec.Meta(max_length=10_000)] = ""


def schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of :class:`EnrichedReview`."""
    raw = msgspec.json.schema(EnrichedReview)
    defs = raw["$defs"]
    body = defs.pop("EnrichedReview")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:segstream:schema:review_enriched:v{SCHEMA_VERSION}",
        **body,
        "additionalProperties": True,
        "$defs": defs,
    }


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    path.write_text(json.dumps(schema(), indent=2, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    print(write_schema())
