"""Campaigns: which action a segment transition triggers, defined in YAML by marketing."""

from models.campaigns.book import (
    AlertSpec,
    Campaign,
    CampaignBook,
    CouponSpec,
    FrequencyCap,
    RouteSpec,
    Trigger,
)
from models.campaigns.exceptions import CampaignError

__all__ = [
    "AlertSpec",
    "Campaign",
    "CampaignBook",
    "CampaignError",
    "CouponSpec",
    "FrequencyCap",
    "RouteSpec",
    "Trigger",
]
