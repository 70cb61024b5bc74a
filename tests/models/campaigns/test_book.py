from pathlib import Path

import pytest

from models.campaigns import CampaignBook, CampaignError


def _one(**campaign):
    body = {"when": {"segment": "price_sensitive", "change": "entered"},
            "coupon": {"type": "percent", "value": 10, "validity": "14d"}}
    body.update(campaign)
    return {"version": "t", "campaigns": {"c": body}}


def test_the_shipped_file_is_valid_and_covers_every_action_kind():
    book = CampaignBook.load()
    kinds = {c.kind for c in book.campaigns}
    assert kinds == {"coupon", "route", "alert"}
    assert book.winback("high").name == "churn_high_winback"
    assert [c.name for c in book.triggered_by("vip", "exited")] == ["vip_lapsed",
                                                                    "vip_lost_alert"]
    assert book.frequency_cap.coupons == 1
    assert book.frequency_cap.per_ms == 7 * 86_400_000


@pytest.mark.parametrize(("change", "message"), [
    ({"coupon": {"type": "bogus", "value": 1, "validity": "1d"}}, "coupon.type must be one of"),
    ({"coupon": {"type": "percent", "value": 150, "validity": "1d"}}, "0 < value <= 100"),
    ({"coupon": {"type": "fixed", "value": 5, "validity": "1d"}}, "needs currency"),
    ({"coupon": {"type": "percent", "value": 5, "validity": "soon"}}, "is not a duration"),
    ({"coupon": {"type": "percent", "value": 5}}, "coupon.validity is required"),
    ({"holdout": 1.0}, "0 <= holdout < 1"),
    ({"daily_budget": 0}, "daily_budget must be an integer >= 1"),
    ({"when": {"segment": "VIP!", "change": "entered"}}, "is not a segment name"),
    ({"when": {"segment": "vip"}}, "'when' must be"),
    ({"route": {"queue": "vip", "priority": 1, "tier": "vip"}}, "exactly one action"),
    ({"colour": "red"}, "unknown keys ['colour']"),
])
def test_invalid_campaigns_name_the_campaign_and_the_fix(change, message):
    with pytest.raises(CampaignError) as err:
        CampaignBook.from_dict(_one(**change))
    assert "campaign 'c'" in str(err.value)
    assert message in str(err.value)


def test_all_problems_are_reported_at_once():
    raw = {"campaigns": {
        "a": {"when": {"segment": "vip", "change": "joined"},
              "alert": {"team": "cs", "message": "m"}},
        "b": {"when": {"segment": "vip", "change": "entered"},
              "coupon": {"type": "percent", "value": 0, "validity": "1d"}}}}
    with pytest.raises(CampaignError) as err:
        CampaignBook.from_dict(raw)
    assert "campaign 'a'" in str(err.value) and "campaign 'b'" in str(err.value)


def test_two_routes_for_one_transition_are_refused():
    route = {"when": {"segment": "vip", "change": "entered"},
             "route": {"queue": "vip", "priority": 1, "tier": "vip"}}
    with pytest.raises(CampaignError, match="one route per transition"):
        CampaignBook.from_dict({"campaigns": {"a": route, "b": route}})


def test_winback_tiers_are_unique_and_need_a_coupon():
    coupon = _one(winback_for=["high"])["campaigns"]["c"]
    with pytest.raises(CampaignError, match="one win-back campaign per tier"):
        CampaignBook.from_dict({"campaigns": {"a": coupon, "b": coupon}})
    alert = {"when": {"segment": "vip", "change": "entered"}, "winback_for": ["high"],
             "alert": {"team": "cs", "message": "m"}}
    with pytest.raises(CampaignError, match="winback_for needs a coupon campaign"):
        CampaignBook.from_dict({"campaigns": {"a": alert}})


def test_dedupe_window_shorter_than_the_cap_is_refused():
    raw = _one()
    raw.update(frequency_cap={"coupons": 1, "per": "7d"}, dedupe_window="1d")
    with pytest.raises(CampaignError, match="dedupe_window must be at least"):
        CampaignBook.from_dict(raw)


def test_load_reports_yaml_errors_and_missing_files(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaigns: [unclosed")
    with pytest.raises(CampaignError, match="not valid YAML"):
        CampaignBook.load(bad)
    with pytest.raises(CampaignError, match="cannot read campaign file"):
        CampaignBook.load(tmp_path / "missing.yaml")
