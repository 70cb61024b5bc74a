"""The campaign book: segment transitions mapped to actions, loaded and validated from YAML.

A campaign names one transition (``when: {segment: vip, change: entered}``) and exactly
one action: a ``coupon``, a service ``route`` or an ``alert``. Coupon campaigns may set a
``daily_budget`` (coupons per event-time UTC day) and a ``holdout`` share of users who
are recorded but get nothing, so that marketing can measure uplift. ``winback_for`` names
the churn tiers whose alerts suggest this campaign. Every problem in a file is reported at
once, each naming the campaign, the field and the fix.

Examples
--------
>>> book = CampaignBook.from_dict({"version": "t1", "campaigns": {"welcome": {
...     "when": {"segment": "price_sensitive", "change": "entered"},
...     "coupon": {"type": "percent", "value": 10, "validity": "14d"},
...     "daily_budget": 100, "holdout": 0.1}}})
>>> [c.name for c in book.triggered_by("price_sensitive", "entered")]
['welcome']
>>> book.campaigns[0].coupon.validity_ms // 86_400_000
14
>>> CampaignBook.from_dict({"campaigns": {"x": {"when": {"segment": "vip",
...     "change": "joined"}, "alert": {"team": "cs", "message": "hi"}}}})
Traceback (most recent call last):
...
models.campaigns.exceptions.CampaignError: invalid campaign book:
  campaign 'x': when.change must be 'entered' or 'exited', got 'joined'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from models.campaigns.exceptions import CampaignError

SEGMENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")
CAMPAIGN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
QUEUE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
COUPON_TYPES = ("percent", "fixed", "free_shipping")
SEVERITIES = ("info", "warning", "critical")
CHANGES = ("entered", "exited")
ACTION_KINDS = ("coupon", "route", "alert")
_CAMPAIGN_KEYS = {"description", "when", "daily_budget", "holdout", "winback_for",
                  *ACTION_KINDS}


def parse_duration(text: str | int) -> int:
    """Milliseconds of ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"`` or ``"2w"``.

    >>> parse_duration("7d")
    604800000
    """
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration like 7d, 12h, 30m, 45s or 2w")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(frozen=True)
class Trigger:
    """The transition a campaign reacts to."""

    segment: str
    change: str


@dataclass(frozen=True)
class CouponSpec:
    """What a coupon grants: ``percent`` off, a ``fixed`` amount off, or ``free_shipping``."""

    type: str
    value: float
    validity_ms: int
    currency: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "value": self.value,
                               "validity_days": round(self.validity_ms / 86_400_000, 3)}
        if self.currency:
            out["currency"] = self.currency
        return out


@dataclass(frozen=True)
class RouteSpec:
    """A service route: the queue, its priority (1 = first) and the tier shown to agents."""

    queue: str
    priority: int
    tier: str

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "priority": self.priority, "tier": self.tier}


@dataclass(frozen=True)
class AlertSpec:
    """An alert for a team (customer service, account management)."""

    team: str
    message: str
    severity: str = "warning"


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``coupons`` coupons per user in any trailing ``per_ms`` of event time."""

    coupons: int = 1
    per_ms: int = 7 * 86_400_000


@dataclass(frozen=True)
class Campaign:
    """One transition and its one action."""

    name: str
    trigger: Trigger
    coupon: CouponSpec | None = None
    route: RouteSpec | None = None
    alert: AlertSpec | None = None
    daily_budget: int | None = None
    holdout: float = 0.0
    winback_for: tuple[str, ...] = ()
    description: str = ""

    @property
    def kind(self) -> str:
        """``coupon``, ``route`` or ``alert``."""
        return "coupon" if self.coupon else "route" if self.route else "alert"


@dataclass(frozen=True)
class CampaignBook:
    """Validated campaigns with an index by transition. Build with :meth:`load`."""

    version: str
    campaigns: tuple[Campaign, ...]
    frequency_cap: FrequencyCap = field(default_factory=FrequencyCap)
    default_route: RouteSpec = field(
        default_factory=lambda: RouteSpec("standard", 3, "standard"))
    dedupe_window_ms: int = 30 * 86_400_000
    _index: dict[tuple[str, str], tuple[Campaign, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], list[Campaign]] = {}
        for c in self.campaigns:
            index.setdefault((c.trigger.segment, c.trigger.change), []).append(c)
        object.__setattr__(self, "_index", {k: tuple(v) for k, v in index.items()})

    def triggered_by(self, segment: str, change: str) -> tuple[Campaign, ...]:
        """Campaigns for one transition, in file order."""
        return self._index.get((segment, change), ())

    def winback(self, tier: str) -> Campaign | None:
        """The campaign suggested for churn alerts of ``tier``, if any."""
        for c in self.campaigns:
            if tier in c.winback_for:
                return c
        return None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path | None = None) -> CampaignBook:
        """Read ``path`` (default: the packaged ``default.yaml``) and validate it."""
        if path is None:
            text = resources.files("models.campaigns").joinpath("default.yaml").read_text()
            where = "default.yaml"
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise CampaignError(f"cannot read campaign file {path}: {exc.strerror}") from None
            where = str(path)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CampaignError(f"{where} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise CampaignError(f"{where} must be a mapping with a 'campaigns' key")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CampaignBook:
        """Validate a parsed campaign document; raise :class:`CampaignError` listing all
        problems."""
        problems: list[str] = []
        unknown = set(raw) - {"version", "frequency_cap", "default_route", "dedupe_window",
                              "campaigns"}
        if unknown:
            problems.append(f"unknown top-level keys {sorted(unknown)}; allowed: version, "
                            "frequency_cap, default_route, dedupe_window, campaigns")
        version = str(raw.get("version") or "unversioned")
        cap = _frequency_cap(raw.get("frequency_cap"), problems)
        default_route = _route("default_route", raw.get("default_route")
                               or {"queue": "standard", "priority": 3, "tier": "standard"},
                               problems)
        dedupe_ms = 30 * 86_400_000
        if "dedupe_window" in raw:
            try:
                dedupe_ms = parse_duration(raw["dedupe_window"])
            except ValueError as exc:
                problems.append(f"dedupe_window: {exc}")
        if dedupe_ms < cap.per_ms:
            problems.append("dedupe_window must be at least frequency_cap.per, or a change "
                            "redelivered after the window could pass the cap again")
        body = raw.get("campaigns")
        campaigns: list[Campaign] = []
        if not isinstance(body, dict) or not body:
            problems.append("'campaigns' must be a non-empty mapping of name -> campaign")
        else:
            for name, spec in body.items():
                c = _campaign(str(name), spec, problems)
                if c is not None:
                    campaigns.append(c)
        _cross_checks(campaigns, problems)
        if problems:
            raise CampaignError("invalid campaign book:\n  " + "\n  ".join(problems))
        return cls(version=version, campaigns=tuple(campaigns), frequency_cap=cap,
                   default_route=default_route or RouteSpec("standard", 3, "standard"),
                   dedupe_window_ms=dedupe_ms)


def _frequency_cap(raw: Any, problems: list[str]) -> FrequencyCap:
    if raw is None:
        return FrequencyCap()
    if not isinstance(raw, dict) or set(raw) - {"coupons", "per"}:
        problems.append("frequency_cap must be {coupons: <int >= 1>, per: <duration>}")
        return FrequencyCap()
    coupons = raw.get("coupons", 1)
    if not isinstance(coupons, int) or isinstance(coupons, bool) or coupons < 1:
        problems.append(f"frequency_cap.coupons must be an integer >= 1, got {coupons!r}")
        coupons = 1
    try:
        per = parse_duration(raw.get("per", "7d"))
    except ValueError as exc:
        problems.append(f"frequency_cap.per: {exc}")
        per = 7 * 86_400_000
    return FrequencyCap(coupons, per)


def _route(where: str, raw: Any, problems: list[str]) -> RouteSpec | None:
    if not isinstance(raw, dict) or set(raw) != {"queue", "priority", "tier"}:
        problems.append(f"{where}: route must be {{queue: <name>, priority: <1..9>, "
                        f"tier: <name>}}, got {raw!r}")
        return None
    queue, priority, tier = raw["queue"], raw["priority"], raw["tier"]
    ok = True
    if not isinstance(queue, str) or not QUEUE.match(queue):
        problems.append(f"{where}: route.queue must be a lower-case name, got {queue!r}")
        ok = False
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 9:
        problems.append(f"{where}: route.priority must be an integer 1 (first) to 9, "
                        f"got {priority!r}")
        ok = False
    if not isinstance(tier, str) or not QUEUE.match(tier):
        problems.append(f"{where}: route.tier must be a lower-case name, got {tier!r}")
        ok = False
    return RouteSpec(queue, priority, tier) if ok else None


def _coupon(where: str, raw: Any, problems: list[str]) -> CouponSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: coupon must be {{type, value, validity[, currency]}}")
        return None
    extra = set(raw) - {"type", "value", "validity", "currency"}
    if extra:
        problems.append(f"{where}: unknown coupon keys {sorted(extra)}")
    ctype, value, currency = raw.get("type"), raw.get("value"), raw.get("currency")
    n = len(problems)
    if ctype not in COUPON_TYPES:
        problems.append(f"{where}: coupon.type must be one of {', '.join(COUPON_TYPES)}, "
                        f"got {ctype!r}")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        problems.append(f"{where}: coupon.value must be a number >= 0, got {value!r}")
    elif ctype == "percent" and not 0 < value <= 100:
        problems.append(f"{where}: a percent coupon needs 0 < value <= 100, got {value}")
    elif ctype == "fixed" and value <= 0:
        problems.append(f"{where}: a fixed coupon needs value > 0")
    if ctype == "fixed" and not (isinstance(currency, str) and re.match(r"^[A-Z]{3}$",
                                                                        currency)):
        problems.append(f"{where}: a fixed coupon needs currency as an ISO code like EUR")
    validity = 0
    if "validity" not in raw:
        problems.append(f"{where}: coupon.validity is required (e.g. 14d)")
    else:
        try:
            validity = parse_duration(raw["validity"])
        except ValueError as exc:
            problems.append(f"{where}: coupon.validity: {exc}")
        else:
            if validity <= 0:
                problems.append(f"{where}: coupon.validity must be > 0")
    if len(problems) > n:
        return None
    assert isinstance(value, int | float)  # checked above
    return CouponSpec(str(ctype), float(value), validity,
                      str(currency) if currency else None)


def _alert(where: str, raw: Any, problems: list[str]) -> AlertSpec | None:
    if not isinstance(raw, dict) or not {"team", "message"} <= set(raw) or set(raw) - {
            "team", "message", "severity"}:
        problems.append(f"{where}: alert must be {{team, message[, severity]}}")
        return None
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        problems.append(f"{where}: alert.severity must be one of {', '.join(SEVERITIES)}, "
                        f"got {severity!r}")
        return None
    team, message = str(raw["team"]).strip(), str(raw["message"]).strip()
    if not team or not message:
        problems.append(f"{where}: alert.team and alert.message must not be empty")
        return None
    return AlertSpec(team, message, severity)


def _campaign(name: str, spec: Any, problems: list[str]) -> Campaign | None:
    where = f"campaign {name!r}"
    if not CAMPAIGN.match(name):
        problems.append(f"{where}: names are lower-case letters, digits and _ (max 64)")
        return None
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be a mapping with 'when' and one action")
        return None
    n = len(problems)
    unknown = set(spec) - _CAMPAIGN_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}; allowed: "
                        f"{', '.join(sorted(_CAMPAIGN_KEYS))}")
    when = spec.get("when")
    trigger = None
    if not isinstance(when, dict) or set(when) != {"segment", "change"}:
        problems.append(f"{where}: 'when' must be {{segment: <name>, change: entered|exited}}")
    elif not isinstance(when["segment"], str) or not SEGMENT.match(when["segment"]):
        problems.append(f"{where}: when.segment {when['segment']!r} is not a segment name "
                        "(like vip, churn_risk.high, cluster.3)")
    elif when["change"] not in CHANGES:
        problems.append(f"{where}: when.change must be 'entered' or 'exited', "
                        f"got {when['change']!r}")
    else:
        trigger = Trigger(when["segment"], when["change"])
    kinds = [k for k in ACTION_KINDS if k in spec]
    if len(kinds) != 1:
        problems.append(f"{where}: needs exactly one action of coupon, route, alert; "
                        f"got {kinds or 'none'}")
        return None
    coupon = _coupon(where, spec["coupon"], problems) if "coupon" in spec else None
    route = _route(where, spec["route"], problems) if "route" in spec else None
    alert = _alert(where, spec["alert"], problems) if "alert" in spec else None
    budget = spec.get("daily_budget")
    holdout = spec.get("holdout", 0.0)
    if kinds[0] != "coupon" and ("daily_budget" in spec or "holdout" in spec):
        problems.append(f"{where}: daily_budget and holdout apply to coupon campaigns only")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)
                               or budget < 1):
        problems.append(f"{where}: daily_budget must be an integer >= 1 (coupons per day), "
                        f"got {budget!r}")
    if not isinstance(holdout, int | float) or isinstance(holdout, bool) or not (
            0 <= holdout < 1):
        problems.append(f"{where}: holdout must be a share 0 <= holdout < 1, got {holdout!r}")
    winback = spec.get("winback_for", [])
    if not isinstance(winback, list) or not all(isinstance(t, str) and t for t in winback):
        problems.append(f"{where}: winback_for must be a list of churn tiers like [high]")
    elif winback and kinds[0] != "coupon":
        problems.append(f"{where}: winback_for needs a coupon campaign (it is the offer "
                        "suggested in churn alerts)")
    if len(problems) > n or trigger is None:
        return None
    return Campaign(name=name, trigger=trigger, coupon=coupon, route=route, alert=alert,
                    daily_budget=budget, holdout=float(holdout),
                    winback_for=tuple(winback), description=str(spec.get("description", "")))


def _cross_checks(campaigns: list[Campaign], problems: list[str]) -> None:
    routes: dict[Trigger, str] = {}
    tiers: dict[str, str] = {}
    for c in campaigns:
        if c.route is not None:
            if c.trigger in routes:
                problems.append(f"campaign {c.name!r}: {routes[c.trigger]!r} already routes on "
                                f"{c.trigger.segment} {c.trigger.change}; one route per "
                                "transition, or the answer would depend on file order")
            routes[c.trigger] = c.name
        for tier in c.winback_for:
            if tier in tiers:
                problems.append(f"campaign {c.name!r}: churn tier {tier!r} already suggests "
                                f"{tiers[tier]!r}; one win-back campaign per tier")
            tiers[tier] = c.name
