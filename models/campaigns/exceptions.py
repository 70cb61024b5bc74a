"""Errors of the campaign book."""

from __future__ import annotations

from models.exceptions import ModelsError


class CampaignError(ModelsError):
    """A campaign file is invalid; the message names the campaign, the field and the fix."""
