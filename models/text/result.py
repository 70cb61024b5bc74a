"""What every review analyzer returns, and the schema LLM answers are validated against.

One struct for the local analyzer and the LLM: the feature code folds either into a
user's state without knowing where it came from, and an LLM answer that does not decode
into :class:`Analysis` is refused (and retried, or replaced by the local result).

Examples
--------
>>> a = parse_analysis('{"lang": "zh", "sentiment": -0.8, "label": "negative",'
...                    ' "aspects": [{"aspect": "logistics", "polarity": "negative"}],'
...                    ' "keywords": ["太慢"]}')
>>> a.aspect_polarity("logistics"), a.aspect_polarity("price")
(-1, None)
>>> parse_analysis(b'{"lang": "en", "sentiment": 0.9, "label": "negative"}')
Traceback (most recent call last):
...
models.text.exceptions.InvalidAnalysis: label 'negative' contradicts sentiment 0.9
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from models.text.exceptions import InvalidAnalysis

ASPECTS: tuple[str, ...] = ("quality", "price", "logistics", "service", "packaging")
"""The aspects every analyzer reports on (the order is the bit order in the feature state)."""

Aspect = Literal["quality", "price", "logistics", "service", "packaging"]
Polarity = Literal["negative", "neutral", "positive"]
POLARITY_VALUE: dict[str, int] = {"negative": -1, "neutral": 0, "positive": 1}
# Scores within this distance of 0 are "neutral".
NEUTRAL_BAND = 0.2

Keyword = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class AspectMention(msgspec.Struct, frozen=True, kw_only=True):
    """One aspect a review talks about, and whether it praises or criticises it."""

    aspect: Aspect
    polarity: Polarity


class Analysis(msgspec.Struct, frozen=True, kw_only=True):
    """Sentiment, aspects and keywords of one review text.

    ``sentiment`` lies in ``[-1, 1]``; ``label`` must agree with its sign (a ``positive``
    label with a negative score is refused). Each aspect appears at most once.
    """

    lang: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")]
    sentiment: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
    label: Polarity
    aspects: Annotated[list[AspectMention], msgspec.Meta(max_length=len(ASPECTS))] = []
    keywords: Annotated[list[Keyword], msgspec.Meta(max_length=8)] = []

    def __post_init__(self) -> None:
        if (self.label == "positive" and self.sentiment < 0) or (
                self.label == "negative" and self.sentiment > 0):
            raise ValueError(f"label {self.label!r} contradicts sentiment {self.sentiment}")
        seen = [m.aspect for m in self.aspects]
        if len(set(seen)) != len(seen):
            raise ValueError(f"aspects repeat: {seen}")

    def aspect_polarity(self, aspect: str) -> int | None:
        """-1, 0 or 1 for an aspect the review raises, ``None`` for one it does not."""
        for m in self.aspects:
            if m.aspect == aspect:
                return POLARITY_VALUE[m.polarity]
        return None


def label_of(score: float) -> Polarity:
    """The label of a score in ``[-1, 1]``.

    >>> label_of(0.5), label_of(0.1), label_of(-0.3)
    ('positive', 'neutral', 'negative')
    """
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


_json_decoder = msgspec.json.Decoder(Analysis)


def parse_analysis(data: bytes | str | dict[str, Any]) -> Analysis:
    """Validate JSON text or an already parsed object into an :class:`Analysis`.

    Raises :class:`InvalidAnalysis` with the reason (malformed JSON, a missing or
    out-of-range field, an unknown aspect, a label that contradicts the score).
    """
    try:
        if isinstance(data, dict):
            return msgspec.convert(data, Analysis, strict=False)
        return _json_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise InvalidAnalysis(str(exc)) from None


def analysis_schema() -> dict[str, Any]:
    """JSON Schema of :class:`Analysis` (sent to the LLM, published for consumers).

    >>> sorted(analysis_schema()["properties"])
    ['aspects', 'keywords', 'label', 'lang', 'sentiment']
    """
    raw = msgspec.json.schema(Analysis)
    defs = raw["$defs"]
    body: dict[str, Any] = defs.pop("Analysis")
    body["$defs"] = defs
    return body


def to_builtins(analysis: Analysis) -> dict[str, Any]:
    """Plain dict of an analysis (for JSON output)."""
    out: dict[str, Any] = msgspec.to_builtins(analysis)
    return out
