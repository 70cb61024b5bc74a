"""The traffic simulator: deterministic, ordered, contract-valid, sized, and truthful.

The ground-truth test folds the simulated stream through the same processor the Kafka
worker uses, so it checks the persona calibration against the real feature code and the
packaged segment policy, not against a re-implementation.
"""

from __future__ import annotations

import collections
import itertools

import msgspec
import pytest

from models.segments.policy import SegmentPolicy
from streams.contracts.events import ClickEvent, OrderEvent, ReviewEvent
from streams.features.state import DAY_MS, HOUR_MS
from streams.features.vector import FEATURE_NAMES
from streams.runtime.processor import Processor, Source
from streams.sim import DEFAULT_MIX, PERSONAS, generate
from streams.sim.generator import REVIEW_TEXTS

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TYPES = {"click": ClickEvent, "order": OrderEvent, "review": ReviewEvent}
SIZES = {"small": (300, 20_000), "default": (2_000, 200_000)}


@pytest.fixture(scope="module")
def small():
    sim = generate(*SIZES["small"], seed=11, end_ms=END_MS)
    return sim, list(sim.events())


def test_same_seed_same_events_other_seed_other_events(small):
    sim, events = small
    again = generate(*SIZES["small"], seed=11, end_ms=END_MS)
    assert again.truth == sim.truth
    assert list(again.events()) == events
    assert list(sim.events()) == events  # replaying the same Simulation is identical too
    other = list(itertools.islice(generate(300, 20_000, seed=12, end_ms=END_MS).events(), 50))
    assert other != events[:50]


def test_events_are_ordered_and_inside_the_span(small):
    sim, events = small
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert sim.start_ms == END_MS - 90 * DAY_MS
    assert sim.start_ms <= ts[0] and ts[-1] <= END_MS
    per_user = collections.defaultdict(list)
    for e in events:
        per_user[e["user_id"]].append(e["ts"])
    assert all(t == sorted(t) for t in per_user.values())


def test_every_event_matches_its_contract(small):
    sim, events = small
    for ev in events:
        assert type(ev["ts"]) is int
        decoded = msgspec.convert(ev, TYPES[ev["type"]], strict=True)
        assert decoded.ts_ms == ev["ts"] and decoded.schema_version == 1
        # JSON-ready: a round trip through JSON gives the same object back
        assert msgspec.json.decode(msgspec.json.encode(ev)) == ev
    assert len({e["event_id"] for e in events}) == len(events)
    assert {e["type"] for e in events} == {"click", "order", "review"}
    assert {e["user_id"] for e in events} == set(sim.truth)


def test_orders_follow_their_lifecycle(small):
    _, events = small
    orders = collections.defaultdict(list)
    for e in events:
        if e["type"] == "order":
            orders[e["order_id"]].append(e)
    statuses = collections.Counter()
    for evs in orders.values():
        seq = [e["status"] for e in evs]
        statuses.update(seq)
        assert seq[0] == "placed"
        assert seq in (["placed"], ["placed", "cancelled"], ["placed", "paid"],
                       ["placed", "paid", "delivered"], ["placed", "paid", "delivered", "refunded"])
        first = evs[0]
        for e in evs:  # one order, one basket: only the status and time change
            for key in ("user_id", "items", "total", "discount", "coupon_code",
                        "payment_method", "currency"):
                assert e[key] == first[key]
        gross = sum(i["quantity"] * i["unit_price"] for i in first["items"])
        assert first["total"] == pytest.approx(gross - first["discount"], abs=0.011)
        assert first["currency"] == "EUR"
        assert first["payment_method"] in ("card", "paypal", "wallet", "cod", "bank_transfer",
                                           "gift_card")
        if len(seq) > 2:
            assert evs[2]["ts"] - evs[1]["ts"] >= DAY_MS  # delivery takes days
    assert statuses["cancelled"] and statuses["refunded"] and statuses["delivered"]
    assert any(o[0]["coupon_code"] for o in orders.values())


def test_reviews_text_agrees_with_rating(small):
    _, events = small
    reviews = [e for e in events if e["type"] == "review"]
    assert {r["lang"] for r in reviews} == {"en", "zh"}
    for r in reviews:
        assert r["text"] in REVIEW_TEXTS[r["lang"]][r["rating"] - 1]


@pytest.mark.parametrize(("users", "events"), [(300, 20_000), (2_000, 200_000), (50, 5_000)])
def test_event_count_is_within_ten_percent(users, events):
    sim = generate(users, events, seed=3, end_ms=END_MS)
    assert abs(sim.total_events - events) <= 0.1 * events
    if users <= 300:
        assert sum(1 for _ in sim.events()) == sim.total_events


def test_scaling_up_lets_window_shoppers_absorb_the_clicks():
    end = END_MS + 12_345_678  # not a day boundary
    natural = generate(100, None, seed=4, end_ms=end)
    big = generate(100, 4 * natural.total_events, seed=4, end_ms=end)
    assert big.truth == natural.truth
    assert abs(big.total_events - 4 * natural.total_events) <= 0.4 * natural.total_events

    def per_persona(sim):
        counts = collections.Counter()
        for ev in sim.events():
            assert sim.start_ms <= ev["ts"] <= end
            counts[sim.truth[ev["user_id"]]] += 1
        return counts

    before, after = per_persona(natural), per_persona(big)
    for persona, n in before.items():
        if persona != "window_shopper":  # the others keep at most 1.5x their clicks
            assert n <= after[persona] <= 1.5 * n
    assert after["window_shopper"] > 4 * before["window_shopper"]


def test_natural_volume_and_mix():
    sim = generate(100, None, seed=5, end_ms=END_MS,
                   mix={"window_shopper": 3, "new_customer": 1, "bargain_hunter": 0})
    assert sim.click_scale == 1.0
    counts = collections.Counter(sim.truth.values())
    assert counts == {"window_shopper": 75, "new_customer": 25}
    default = collections.Counter(generate(1_000, None, seed=5, end_ms=END_MS).truth.values())
    assert default == {name: round(1_000 * share) for name, share in DEFAULT_MIX.items()}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown personas"):
        generate(10, None, seed=1, end_ms=END_MS, mix={"shopaholic": 1.0})
    with pytest.raises(ValueError, match="too few"):
        generate(300, 3_000, seed=1, end_ms=END_MS)


def _final_segments(events):
    processor = Processor(SegmentPolicy.load(None, FEATURE_NAMES), lateness_ms=HOUR_MS)
    states = {}
    for offset, ev in enumerate(events):
        typed = msgspec.convert(ev, TYPES[ev["type"]], strict=True)
        user = ev["user_id"]
        states[user] = processor.process(states.get(user), typed,
                                         Source("sim", 0, offset)).state
    return {user: set(state.segments) for user, state in states.items()}


@pytest.mark.parametrize("size", sorted(SIZES))
def test_personas_end_up_in_their_target_segment(size):
    users, events = SIZES[size]
    sim = generate(users, events, seed=2026, end_ms=END_MS)
    segments = _final_segments(sim.events())
    members = collections.Counter(sim.truth.values())
    hits = collections.Counter(
        persona for user, persona in sim.truth.items()
        if PERSONAS[persona].target in segments.get(user, set())
    )
    shares = {p: hits[p] / n for p, n in members.items()}
    assert set(shares) == set(PERSONAS)
    assert all(share >= 0.8 for share in shares.values()), shares
