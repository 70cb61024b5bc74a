"""Errors of the online models."""

from __future__ import annotations

from models.exceptions import ModelsError


class SnapshotError(ModelsError):
    """A model snapshot cannot be used (truncated, corrupt, wrong format or checksum)."""
