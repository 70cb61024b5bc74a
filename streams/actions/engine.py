"""The campaign engine: pure decisions from segment changes to actions.

Nothing here touches Kafka or faust. The app's agents read a user's state from a table,
call :func:`handle_change` (or :func:`handle_churn_alert`), produce the returned actions
and write the returned state back, so every rule (caps, budgets, holdout, de-duplication)
is tested here without a broker.

Event time (``at_ms`` of the change), never the wall clock, drives frequency caps, budget
days, coupon expiry and the de-duplication window, so replaying the same changes gives
the same actions.

Identity
    ``action_id = blake2b(change event_id | campaign)``: a redelivered change yields the
    same ids, and the state remembers the change ids it has handled (for the campaign
    book's ``dedupe_window`` of event time), so it yields no action at all.

Examples
--------
>>> from models.campaigns import CampaignBook
>>> book = CampaignBook.from_dict({"version": "t", "campaigns": {"welcome": {
...     "when": {"segment": "price_sensitive", "change": "entered"},
...     "coupon": {"type": "percent", "value": 10, "validity": "14d"}}}})
>>> ch = SegmentChange(event_id="e1", schema_version=1, user_id="u1",
...     segment="price_sensitive", change="entered", at="2026-09-11T00:00:00Z",
...     at_ms=1_789_084_800_000, segments=["price_sensitive"])
>>> rules = Rules(book=book, holdout_seed="s")
>>> out = handle_change(UserState(), ch, rules, budgets={})
>>> [(type(a).__name__, a.campaign, a.expires_at) for a in out.actions]
[('CouponAction', 'welcome', '2026-09-25T00:00:00.000Z')]
>>> handle_change(out.user, ch, rules, budgets={}).outcomes   # redelivered
[('*', 'duplicate')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from models.campaigns import Campaign, CampaignBook, CouponSpec
from streams.actions.contracts import ChurnAlert, Reason, SegmentChange

SCHEMA_VERSION = 1
DAY_MS = 86_400_000
TOP_REASONS = 3


def iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds.

    >>> iso(0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds"
                                                            ).replace("+00:00", "Z")


def action_id(source_event_id: str, campaign: str) -> str:
    """Deterministic id of the action a change triggers for one campaign.

    >>> action_id("e1", "welcome") == action_id("e1", "welcome") != action_id("e2", "welcome")
    True
    """
    return hashlib.blake2b(f"{source_event_id}|{campaign}".encode(), digest_size=16).hexdigest()


def in_holdout(seed: str, campaign: Campaign, user_id: str) -> bool:
    """Whether ``user_id`` is in ``campaign``'s holdout group.

    A keyed hash, not a random draw: a user stays in (or out of) a campaign's holdout
    across restarts and replays, and different campaigns draw independent groups.
    """
    if campaign.holdout <= 0:
        return False
    h = hashlib.blake2b(f"{seed}|{campaign.name}|{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < campaign.holdout


def budget_share(daily_budget: int, partition: int, partitions: int) -> int:
    """The part of a daily budget that one input partition may spend.

    Budgets are counted per partition (the state of a partition lives on one worker, so
    no two workers race for the same counter); the shares add up to the budget.

    >>> [budget_share(10, p, 3) for p in range(3)]
    [4, 3, 3]
    """
    base, rest = divmod(daily_budget, partitions)
    return base + (1 if partition < rest else 0)


def budget_key(campaign: str, at_ms: int, partition: int) -> str:
    """Table key of a campaign's spend on the event-time UTC day of ``at_ms``.

    >>> budget_key("welcome", 86_400_000 * 3 + 5, 2)
    'welcome|3|2'
    """
    return f"{campaign}|{at_ms // DAY_MS}|{partition}"


# ---------------------------------------------------------------------- state
class RouteState(msgspec.Struct, frozen=True, kw_only=True):
    """A user's current service route and the campaign that set it."""

    queue: str
    priority: int
    tier: str
    campaign: str
    why: str
    since_ms: int


class UserState(msgspec.Struct, kw_only=True):
    """What the app remembers per user (the value of the ``users`` table)."""

    seen: dict[str, int] = {}
    latest_ms: int = 0
    coupons: list[int] = []
    segments: list[str] = []
    scores: dict[str, float | str | None] = {}
    reasons: dict[str, list[Reason]] = {}
    profile_ms: int = -1
    route: RouteState | None = None


class ChurnState(msgspec.Struct, kw_only=True):
    """What the app remembers per user about churn alerts (dedupe only)."""

    seen: dict[str, int] = {}
    latest_ms: int = 0


_user_encoder = msgspec.msgpack.Encoder()
_user_decoder = msgspec.msgpack.Decoder(UserState)
_churn_decoder = msgspec.msgpack.Decoder(ChurnState)


def dump_state(state: UserState | ChurnState) -> bytes:
    """Compact bytes for a table value."""
    return _user_encoder.encode(state)


def load_user(raw: bytes | None) -> UserState:
    """Inverse of :func:`dump_state` for a user (``None``: a user not seen yet)."""
    return UserState() if raw is None else _user_decoder.decode(raw)


def load_churn(raw: bytes | None) -> ChurnState:
    """Inverse of :func:`dump_state` for churn dedupe state."""
    return ChurnState() if raw is None else _churn_decoder.decode(raw)


# -------------------------------------------------------------------- actions
class Why(msgspec.Struct, frozen=True, kw_only=True):
    """The segment change behind an action, with the conditions that caused it."""

    segment: str
    change: str
    change_event_id: str
    at: str
    text: str
    conditions: list[Reason]


class Coupon(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    type: str
    value: float
    currency: str | None
    validity_days: float


class CouponAction(msgspec.Struct, frozen=True, kw_only=True):
    """A coupon issued to a user (``actions.coupons``)."""

    action_id: str
    schema_version: int
    user_id: str
    campaign: str
    coupon: Coupon
    reason: Why
    issued_at: str
    issued_at_ms: int
    expires_at: str
    expires_at_ms: int
    campaign_version: str


class HoldoutAction(msgspec.Struct, frozen=True, kw_only=True):
    """A user drawn into a campaign's holdout group: recorded, no coupon
    (``actions.holdout``)."""

    action_id: str
    schema_version: int
    user_id: str
    campaign: str
    withheld: dict[str, Any]
    reason: Why
    at: str
    at_ms: int
    campaign_version: str


class RouteAction(msgspec.Struct, frozen=True, kw_only=True):
    """A service routing change (``actions.vip-routing``)."""

    action_id: str
    schema_version: int
    user_id: str
    campaign: str
    queue: str
    priority: int
    tier: str
    previous_queue: str
    reason: Why
    at: str
    at_ms: int
    campaign_version: str


class AlertAction(msgspec.Struct, frozen=True, kw_only=True):
    """An alert for a team from a segment transition (``actions.alerts``)."""

    action_id: str
    schema_version: int
    user_id: str
    campaign: str
    team: str
    severity: str
    message: str
    reason: Why
    at: str
    at_ms: int
    campaign_version: str


class TopReason(msgspec.Struct, frozen=True, kw_only=True):
    feature: str
    value: float | None
    contribution: float
    text: str


class ChurnAlertAction(msgspec.Struct, frozen=True, kw_only=True):
    """An actionable churn alert (``actions.churn-alerts``)."""

    action_id: str
    schema_version: int
    user_id: str
    tier: str
    previous_tier: str | None
    score: float
    top_reasons: list[TopReason]
    suggested_campaign: str | None
    suggested_offer: dict[str, Any] | None
    alert_event_id: str
    at: str
    at_ms: int
    model_version: str | None
    campaign_version: str


Action = CouponAction | HoldoutAction | RouteAction | AlertAction | ChurnAlertAction

_json = msgspec.json.Encoder()


def encode(action: Action) -> bytes:
    """JSON bytes of an action record."""
    return _json.encode(action)


# ------------------------------------------------------------------ decisions
@dataclass(frozen=True)
class Rules:
    """What every decision needs besides the state: the campaigns and the holdout seed."""

    book: CampaignBook
    holdout_seed: str


@dataclass(frozen=True)
class State:
    """One campaign's view of a decision: the user, and today's budget spend and share."""

    user: UserState
    spent_today: int = 0
    budget_today: int | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`decide`: the new state, the actions, and a bounded outcome
    token for metrics (``issued``, ``holdout``, ``frequency_cap``, ``budget_exhausted``,
    ``routed``, ``alerted``)."""

    state: State
    actions: list[Action]
    outcome: str


def _why(change: SegmentChange) -> Why:
    sign = "entered" if change.change == "entered" else "exited"
    conds = ", ".join(r.text or r.feature for r in change.reasons)
    text = f"{sign} {change.segment}" + (f": {conds}" if conds else "")
    return Why(segment=change.segment, change=change.change, change_event_id=change.event_id,
               at=change.at, text=text, conditions=list(change.reasons))


def _coupon(spec: CouponSpec, aid: str) -> Coupon:
    return Coupon(code="SEG-" + aid[:12].upper(), type=spec.type, value=spec.value,
                  currency=spec.currency, validity_days=round(spec.validity_ms / DAY_MS, 3))


def decide(state: State, change: SegmentChange, campaign: Campaign, rules: Rules) -> Decision:
    """Apply one campaign to one (new, not duplicate) change.

    Coupon campaigns check, in order: the user's frequency cap (across campaigns), the
    day's budget share, then the holdout draw. Holdout users count against the cap but
    not the budget, so the holdout faces the same eligibility as the treated group.
    """
    aid = action_id(change.event_id, campaign.name)
    user, at = state.user, change.at_ms
    version = rules.book.version
    if campaign.route is not None:
        r = campaign.route
        previous = user.route.queue if user.route else rules.book.default_route.queue
        why = _why(change)
        user.route = RouteState(queue=r.queue, priority=r.priority, tier=r.tier,
                                campaign=campaign.name, why=why.text, since_ms=at)
        act: Action = RouteAction(
            action_id=aid, schema_version=SCHEMA_VERSION, user_id=change.user_id,
            campaign=campaign.name, queue=r.queue, priority=r.priority, tier=r.tier,
            previous_queue=previous, reason=why, at=change.at, at_ms=at,
            campaign_version=version)
        return Decision(state, [act], "routed")
    if campaign.alert is not None:
        a = campaign.alert
        act = AlertAction(action_id=aid, schema_version=SCHEMA_VERSION, user_id=change.user_id,
                          campaign=campaign.name, team=a.team, severity=a.severity,
                          message=a.message, reason=_why(change), at=change.at, at_ms=at,
                          campaign_version=version)
        return Decision(state, [act], "alerted")
    spec = campaign.coupon
    assert spec is not None  # a validated campaign has exactly one action
    cap = rules.book.frequency_cap
    recent = [t for t in user.coupons if at - cap.per_ms < t <= at]
    if len(recent) >= cap.coupons:
        return Decision(state, [], "frequency_cap")
    if state.budget_today is not None and state.spent_today >= state.budget_today:
        return Decision(state, [], "budget_exhausted")
    user.coupons = [*recent, at]
    coupon = _coupon(spec, aid)
    if in_holdout(rules.holdout_seed, campaign, change.user_id):
        held = HoldoutAction(
            action_id=aid, schema_version=SCHEMA_VERSION, user_id=change.user_id,
            campaign=campaign.name, withheld=msgspec.to_builtins(coupon), reason=_why(change),
            at=change.at, at_ms=at, campaign_version=version)
        return Decision(state, [held], "holdout")
    expires = at + spec.validity_ms
    issued = CouponAction(
        action_id=aid, schema_version=SCHEMA_VERSION, user_id=change.user_id,
        campaign=campaign.name, coupon=coupon, reason=_why(change), issued_at=change.at,
        issued_at_ms=at, expires_at=iso(expires), expires_at_ms=expires,
        campaign_version=version)
    new_state = State(user, state.spent_today + 1, state.budget_today)
    return Decision(new_state, [issued], "issued")


@dataclass
class ChangeResult:
    """Everything one change did: the user's new state, the actions, the budget counters
    that moved (``{campaign: spent}``), and ``(campaign, outcome)`` pairs (``'*'`` for the
    whole change: ``duplicate`` or ``stale``)."""

    user: UserState
    actions: list[Action] = field(default_factory=list)
    spent: dict[str, int] = field(default_factory=dict)
    outcomes: list[tuple[str, str]] = field(default_factory=list)


def update_profile(user: UserState, change: SegmentChange) -> None:
    """Keep the user's segments, scores and per-segment reasons as of the newest change."""
    if change.at_ms < user.profile_ms:
        return
    user.profile_ms = change.at_ms
    user.segments = sorted(change.segments)
    if change.scores:
        user.scores = dict(change.scores)
    if change.change == "entered":
        user.reasons[change.segment] = list(change.reasons)
    else:
        user.reasons.pop(change.segment, None)
    members = set(user.segments)
    for name in [s for s in user.reasons if s not in members]:
        del user.reasons[name]


def _remember(seen: dict[str, int], event_id: str, at_ms: int, latest_ms: int,
              window_ms: int) -> dict[str, int]:
    seen[event_id] = at_ms
    horizon = latest_ms - window_ms
    if min(seen.values()) < horizon:
        seen = {k: v for k, v in seen.items() if v >= horizon}
    return seen


def handle_change(user: UserState, change: SegmentChange, rules: Rules,
                  budgets: Mapping[str, tuple[int, int | None]]) -> ChangeResult:
    """Apply every campaign the change triggers, once per change id.

    Parameters
    ----------
    user
        The user's state (mutated and returned in the result).
    budgets
        ``{campaign: (spent_today, share_today)}`` for the triggered coupon campaigns
        (missing: no budget).

    A change id already in the state is a ``duplicate``; a change older than the newest
    one minus the ``dedupe_window`` is ``stale``: its id may have been forgotten, so it
    is dropped rather than risk a second coupon. Both produce nothing.
    """
    window = rules.book.dedupe_window_ms
    if change.event_id in user.seen:
        return ChangeResult(user, outcomes=[("*", "duplicate")])
    if change.at_ms < user.latest_ms - window:
        return ChangeResult(user, outcomes=[("*", "stale")])
    result = ChangeResult(user)
    update_profile(user, change)
    for campaign in rules.book.triggered_by(change.segment, change.change):
        spent, share = budgets.get(campaign.name, (0, None))
        d = decide(State(user, spent, share), change, campaign, rules)
        result.actions.extend(d.actions)
        result.outcomes.append((campaign.name, d.outcome))
        if d.state.spent_today != spent:
            result.spent[campaign.name] = d.state.spent_today
    user.latest_ms = max(user.latest_ms, change.at_ms)
    user.seen = _remember(user.seen, change.event_id, change.at_ms, user.latest_ms, window)
    return result


def _contribution_text(c: Any) -> str:
    value = "" if c.value is None else f"={c.value:g}"
    return f"{c.feature}{value} ({c.contribution:+.2f})"


def handle_churn_alert(state: ChurnState, alert: ChurnAlert, rules: Rules
                       ) -> tuple[ChurnState, list[Action]]:
    """Turn a churn alert into an actionable one: the top reasons by contribution and the
    win-back campaign configured for the tier. Redelivered alerts yield nothing."""
    window = rules.book.dedupe_window_ms
    if alert.event_id in state.seen or alert.at_ms < state.latest_ms - window:
        return state, []
    top = sorted(alert.top_features, key=lambda c: -abs(c.contribution))[:TOP_REASONS]
    winback = rules.book.winback(alert.tier)
    offer = winback.coupon.as_dict() if winback and winback.coupon else None
    act = ChurnAlertAction(
        action_id=action_id(alert.event_id, "churn-alert"), schema_version=SCHEMA_VERSION,
        user_id=alert.user_id, tier=alert.tier, previous_tier=alert.previous_tier,
        score=alert.score,
        top_reasons=[TopReason(feature=c.feature, value=c.value, contribution=c.contribution,
                               text=_contribution_text(c)) for c in top],
        suggested_campaign=winback.name if winback else None, suggested_offer=offer,
        alert_event_id=alert.event_id, at=alert.at, at_ms=alert.at_ms,
        model_version=alert.model_version, campaign_version=rules.book.version)
    state.latest_ms = max(state.latest_ms, alert.at_ms)
    state.seen = _remember(state.seen, alert.event_id, alert.at_ms, state.latest_ms, window)
    return state, [act]


# ------------------------------------------------------------------ HTTP answers
def route_answer(user_id: str, user: UserState | None, book: CampaignBook) -> dict[str, Any]:
    """What ``GET /users/{id}/route`` returns; users nobody routed get the default.

    >>> from models.campaigns import CampaignBook
    >>> b = CampaignBook.from_dict({"campaigns": {"a": {"when": {"segment": "vip",
    ...     "change": "entered"}, "alert": {"team": "cs", "message": "m"}}}})
    >>> route_answer("u9", None, b)["queue"]
    'standard'
    """
    if user is None or user.route is None:
        d = book.default_route
        return {"user_id": user_id, "queue": d.queue, "priority": d.priority, "tier": d.tier,
                "why": "default route: no routing campaign applies to this user",
                "campaign": None, "since": None, "default": True}
    r = user.route
    return {"user_id": user_id, "queue": r.queue, "priority": r.priority, "tier": r.tier,
            "why": r.why, "campaign": r.campaign, "since": iso(r.since_ms), "default": False}


def profile_answer(user_id: str, user: UserState) -> dict[str, Any]:
    """What ``GET /users/{id}`` returns: segments, scores and the reasons per segment."""
    return {"user_id": user_id, "segments": user.segments, "scores": user.scores,
            "reasons": {s: [msgspec.to_builtins(r) for r in rs]
                        for s, rs in sorted(user.reasons.items())},
            "as_of": iso(user.profile_ms) if user.profile_ms >= 0 else None}
