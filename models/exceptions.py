"""Errors raised by the models side of segstream (segment policy, learners, text)."""

from __future__ import annotations


class ModelsError(Exception):
    """Base class of every error raised on purpose under ``models``."""


class PolicyError(ModelsError):
    """A segment policy file is invalid; the message names the segment and the fix."""
