import pytest

from models.campaigns import CampaignBook
from streams.actions.contracts import ChurnAlert, Contribution, Reason, SegmentChange
from streams.actions.engine import (
    DAY_MS,
    ChurnState,
    CouponAction,
    HoldoutAction,
    RouteAction,
    Rules,
    UserState,
    budget_share,
    dump_state,
    handle_change,
    handle_churn_alert,
    in_holdout,
    load_user,
    profile_answer,
    route_answer,
)

T0 = 1_789_084_800_000  # 2026-09-11T00:00:00Z


def book(**over):
    raw = {"version": "t1", "frequency_cap": {"coupons": 1, "per": "7d"},
           "campaigns": {
               "welcome": {"when": {"segment": "price_sensitive", "change": "entered"},
                           "coupon": {"type": "percent", "value": 10, "validity": "14d"}},
               "cart": {"when": {"segment": "cart_abandoner", "change": "entered"},
                        "coupon": {"type": "free_shipping", "value": 0, "validity": "3d"}},
               "vip_in": {"when": {"segment": "vip", "change": "entered"},
                          "route": {"queue": "vip", "priority": 1, "tier": "vip"}},
               "vip_out": {"when": {"segment": "vip", "change": "exited"},
                           "route": {"queue": "standard", "priority": 3, "tier": "standard"}},
               "winback": {"when": {"segment": "churn_risk.high", "change": "entered"},
                           "coupon": {"type": "fixed", "value": 15, "currency": "EUR",
                                      "validity": "7d"}, "winback_for": ["high"]}}}
    for name, fields in over.items():
        raw["campaigns"][name].update(fields)
    return CampaignBook.from_dict(raw)


def change(eid, user="u1", segment="price_sensitive", kind="entered", at=T0, segments=None):
    return SegmentChange(
        event_id=eid, schema_version=1, user_id=user, segment=segment, change=kind,
        at="x", at_ms=at, segments=segments if segments is not None else [segment],
        reasons=[Reason(feature="coupon_share_365d", op=">=", value=0.5, threshold=0.5)],
        scores={"churn": 0.3})


def rules(b=None):
    return Rules(book=b or book(), holdout_seed="seed")


def test_a_coupon_carries_the_reason_and_expires_in_event_time():
    out = handle_change(UserState(), change("e1"), rules(), {})
    [coupon] = out.actions
    assert isinstance(coupon, CouponAction)
    assert coupon.campaign == "welcome" and coupon.user_id == "u1"
    assert coupon.expires_at_ms == T0 + 14 * DAY_MS
    assert coupon.reason.text == "entered price_sensitive: coupon_share_365d=0.5 >= 0.5"
    assert coupon.reason.change_event_id == "e1"
    assert out.outcomes == [("welcome", "issued")]


def test_a_redelivered_change_produces_nothing_and_leaves_the_state_alone():
    r = rules()
    first = handle_change(UserState(), change("e1"), r, {})
    before = dump_state(first.user)
    again = handle_change(load_user(before), change("e1"), r, {})
    assert again.actions == [] and again.outcomes == [("*", "duplicate")]
    assert dump_state(again.user) == before


def test_action_ids_are_deterministic_per_change_and_campaign():
    a = handle_change(UserState(), change("e1"), rules(), {}).actions[0]
    b = handle_change(UserState(), change("e1"), rules(), {}).actions[0]
    c = handle_change(UserState(), change("e2"), rules(), {}).actions[0]
    assert a.action_id == b.action_id != c.action_id


def test_frequency_cap_spans_campaigns_and_reopens_after_the_window():
    r = rules()
    user = handle_change(UserState(), change("e1"), r, {}).user
    capped = handle_change(user, change("e2", segment="cart_abandoner", at=T0 + DAY_MS), r, {})
    assert capped.actions == [] and capped.outcomes == [("cart", "frequency_cap")]
    later = handle_change(capped.user, change("e3", segment="cart_abandoner",
                                              at=T0 + 7 * DAY_MS), r, {})
    assert [a.campaign for a in later.actions] == ["cart"]


def test_budget_share_stops_coupons_for_the_day_and_counts_spend():
    r = rules()
    ok = handle_change(UserState(), change("e1", user="a"), r, {"welcome": (1, 2)})
    assert ok.spent == {"welcome": 2}
    out = handle_change(UserState(), change("e2", user="b"), r, {"welcome": (2, 2)})
    assert out.actions == [] and out.outcomes == [("welcome", "budget_exhausted")]
    assert out.spent == {}


def test_budget_shares_add_up_to_the_budget():
    for budget in (1, 7, 100, 101):
        assert sum(budget_share(budget, p, 6) for p in range(6)) == budget


def test_holdout_share_is_within_tolerance_and_costs_no_budget():
    r = rules(book(welcome={"holdout": 0.25}))
    held = issued = 0
    for i in range(4000):
        out = handle_change(UserState(), change(f"e{i}", user=f"u{i}"), r, {"welcome": (0, 9)})
        [a] = out.actions
        if isinstance(a, HoldoutAction):
            held += 1
            assert out.spent == {} and a.withheld["type"] == "percent"
        else:
            issued += 1
            assert out.spent == {"welcome": 1}
    assert abs(held / 4000 - 0.25) < 0.03
    assert held + issued == 4000


def test_holdout_counts_against_the_frequency_cap():
    r = rules(book(welcome={"holdout": 0.5}))
    uid = next(f"u{i}" for i in range(100) if in_holdout("seed", r.book.campaigns[0], f"u{i}"))
    first = handle_change(UserState(), change("e1", user=uid), r, {})
    assert isinstance(first.actions[0], HoldoutAction)
    second = handle_change(first.user, change("e2", user=uid, segment="cart_abandoner",
                                                at=T0 + 1000), r, {})
    assert second.outcomes == [("cart", "frequency_cap")]


def test_holdout_membership_is_stable_and_independent_per_campaign():
    b = book(welcome={"holdout": 0.5}, cart={"holdout": 0.5})
    welcome, cart = b.campaigns[0], b.campaigns[1]
    users = [f"u{i}" for i in range(2000)]
    w = {u for u in users if in_holdout("s", welcome, u)}
    assert w == {u for u in users if in_holdout("s", welcome, u)}
    c = {u for u in users if in_holdout("s", cart, u)}
    assert 0.2 < len(w & c) / len(users) < 0.3  # independent draws: about 0.5 * 0.5


def test_old_changes_beyond_the_dedupe_window_are_dropped_as_stale():
    r = rules()
    user = handle_change(UserState(), change("e1", at=T0 + 40 * DAY_MS), r, {}).user
    out = handle_change(user, change("e0", segment="cart_abandoner", at=T0), r, {})
    assert out.outcomes == [("*", "stale")] and out.actions == []


def test_seen_ids_are_bounded_by_the_window():
    r = rules()
    user = UserState()
    for day in range(100):
        user = handle_change(user, change(f"e{day}", segment="other", at=T0 + day * DAY_MS),
                             r, {}).user
    assert len(user.seen) == 31  # 30 days back plus today


def test_routes_follow_vip_transitions_and_unknown_users_get_the_default():
    r = rules()
    assert route_answer("nobody", None, r.book)["default"] is True
    entered = handle_change(UserState(), change("e1", segment="vip"), r, {})
    [act] = entered.actions
    assert isinstance(act, RouteAction) and act.previous_queue == "standard"
    answer = route_answer("u1", entered.user, r.book)
    assert (answer["queue"], answer["priority"], answer["tier"]) == ("vip", 1, "vip")
    assert "coupon_share_365d" in answer["why"]
    exited = handle_change(entered.user, change("e2", segment="vip", kind="exited",
                                                segments=[], at=T0 + 1), r, {})
    assert route_answer("u1", exited.user, r.book)["queue"] == "standard"


def test_profile_keeps_reasons_of_current_segments_only():
    r = rules()
    user = handle_change(UserState(), change("e1", segment="vip"), r, {}).user
    user = handle_change(user, change("e2", segments=["price_sensitive", "vip"], at=T0 + 1),
                         r, {}).user
    p = profile_answer("u1", user)
    assert p["segments"] == ["price_sensitive", "vip"] and set(p["reasons"]) == {
        "price_sensitive", "vip"}
    assert p["scores"] == {"churn": 0.3}
    user = handle_change(user, change("e3", segment="vip", kind="exited",
                                      segments=["price_sensitive"], at=T0 + 2), r, {}).user
    assert set(profile_answer("u1", user)["reasons"]) == {"price_sensitive"}
    # an older change arriving late does not roll the profile back
    user = handle_change(user, change("e4", segment="dormant", segments=["dormant"],
                                      at=T0), r, {}).user
    assert profile_answer("u1", user)["segments"] == ["price_sensitive"]


def test_churn_alert_lists_top_reasons_and_suggests_the_tier_campaign():
    r = rules()
    alert = ChurnAlert(event_id="a1", schema_version=1, user_id="u1", at="x", at_ms=T0,
                       tier="high", previous_tier="medium", score=0.83, top_features=[
                           Contribution(feature="f1", value=1.0, contribution=0.05),
                           Contribution(feature="recency_days", value=74.0, contribution=0.41),
                           Contribution(feature="f3", value=None, contribution=-0.3),
                           Contribution(feature="f4", value=2.0, contribution=0.2)])
    state, [act] = handle_churn_alert(ChurnState(), alert, r)
    assert [t.feature for t in act.top_reasons] == ["recency_days", "f3", "f4"]
    assert act.top_reasons[0].text == "recency_days=74 (+0.41)"
    assert act.suggested_campaign == "winback" and act.suggested_offer["currency"] == "EUR"
    _, again = handle_churn_alert(state, alert, r)
    assert again == []


@pytest.mark.parametrize("tier", ["medium", "low"])
def test_churn_alert_without_a_campaign_for_the_tier_suggests_none(tier):
    alert = ChurnAlert(event_id="a1", schema_version=1, user_id="u1", at="x", at_ms=T0,
                       tier=tier, score=0.5)
    _, [act] = handle_churn_alert(ChurnState(), alert, rules())
    assert act.suggested_campaign is None and act.suggested_offer is None
