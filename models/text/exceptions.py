"""Errors of the text analysis models."""

from __future__ import annotations

from models.exceptions import ModelsError


class TextModelError(ModelsError):
    """Base class of the errors raised on purpose under ``models.text``."""


class InvalidAnalysis(TextModelError):
    """An analysis (typically an LLM answer) does not match the analyzer schema.

    ``detail`` says which field was wrong, so the retry prompt and the metrics can say why.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ArtifactError(TextModelError):
    """The shipped starting model is missing or unreadable; the message says how to rebuild."""
