"""The one interface every review analyzer implements.

The worker scores each review inline with the local analyzer; the enrichment stage
asks an LLM for the same :class:`~models.text.result.Analysis`, so features never care
which one produced a result.
"""

from __future__ import annotations

from typing import Protocol

from models.text.result import Analysis


class Analyzer(Protocol):
    """Turns one review text into sentiment, aspects and keywords."""

    def analyze(self, text: str, lang: str | None = None) -> Analysis:
        """Analyse ``text``; ``lang`` (``"zh"``, ``"en"``, ``"zh-CN"``...) when the event
        carries it, else detected from the text."""
        ...
