"""The processor: changes only on change, deterministic ids, late events refused."""

from __future__ import annotations

import pytest

from models.segments.policy import SegmentPolicy
from streams.contracts.events import OrderEvent
from streams.exceptions import InvalidEvent
from streams.features.state import DAY_MS, HOUR_MS
from streams.features.vector import FEATURE_NAMES
from streams.runtime.processor import Processor, Source

T0 = 1_750_000_000_000


def order(ts, oid, total):
    return OrderEvent(event_id=f"e-{oid}", user_id="u1", ts=ts, schema_version=1,
                      order_id=oid, status="placed", total=total, currency="EUR")


@pytest.fixture
def processor():
    return Processor(SegmentPolicy.load(None, FEATURE_NAMES), lateness_ms=HOUR_MS)


def run(processor, events):
    state, out = None, []
    for i, ev in enumerate(events):
        r = processor.process(state, ev, Source("shop.orders", 0, i))
        state = r.state
        out.append(r)
    return state, out


def test_first_order_makes_a_new_customer_and_then_nothing_changes(processor):
    _state, results = run(processor, [order(T0, "a", 10), order(T0 + DAY_MS, "b", 10)])
    [ch] = results[0].changes
    assert (ch["segment"], ch["change"]) == ("new_customer", "entered")
    assert ch["policy_version"] == processor.policy.version and ch["model_version"] is None
    assert ch["source"] == {"topic": "shop.orders", "partition": 0, "offset": 0,
                            "event_id": "e-a", "event_ts_ms": T0}
    assert results[0].current["segments"] == {"new_customer": {"since": ch["at"]}}
    assert results[1].changes == [] and results[1].current is None


def test_vip_entry_carries_reasons(processor):
    _, results = run(processor, [order(T0 + i * DAY_MS, f"o{i}", 400) for i in range(3)])
    vip = [c for c in results[2].changes if c["segment"] == "vip"]
    assert vip and vip[0]["reasons"][0] == {"feature": "spend_365d", "op": ">=",
                                            "value": 1200.0, "threshold": 1000.0}
    assert "vip" in results[2].current["segments"]


def test_ids_are_deterministic(processor):
    _, a = run(processor, [order(T0, "a", 10)])
    _, b = run(processor, [order(T0, "a", 10)])
    assert a[0].changes[0]["event_id"] == b[0].changes[0]["event_id"]


def test_late_event_is_refused_and_changes_nothing(processor):
    state, _ = run(processor, [order(T0, "a", 10), order(T0 + 10 * HOUR_MS, "b", 10)])
    before = (state.events, dict(state.orders))
    with pytest.raises(InvalidEvent) as info:
        processor.process(state, order(T0 + 8 * HOUR_MS, "c", 10), Source("t", 0, 9))
    assert info.value.reason == "late"
    assert (state.events, dict(state.orders)) == before


def test_dormant_after_sixty_days_without_order(processor):
    _, results = run(processor, [order(T0, "a", 10), order(T0 + 61 * DAY_MS, "b", 10)])
    kinds = {(c["segment"], c["change"]) for c in results[1].changes}
    assert ("new_customer", "exited") in kinds


@pytest.mark.parametrize("with_models", [False, True])
def test_timers_make_an_idle_buyer_dormant(with_models, tmp_path):
    """Time alone moves a user into ``dormant``: the user's timers re-evaluate them, with
    the models on as well (their label timers share the user's one timer)."""
    from streams.config import Settings
    from streams.runtime.app import build_models, build_processor

    settings = Settings.from_env({"SEGSTREAM_MODELS_ENABLED": str(with_models).lower(),
                                  "SEGSTREAM_TEXT_ANALYZER": "off",
                                  "SEGSTREAM_MODEL_SNAPSHOT_DIR": str(tmp_path)})
    proc = build_processor(settings, build_models(settings))
    state, _ = run(proc, [order(T0 + 3_600_123, "a", 10)])
    entered = []
    for _ in range(50):  # fire the user's timers one after the other, as the runner does
        due = state.timer_due
        if not due or due > T0 + 100 * DAY_MS:
            break
        r = proc.fire_timer("u1", state, due)
        state = r.state
        entered += [(c["segment"], (c["at_ms"] - T0) // DAY_MS) for c in r.changes
                    if c["change"] == "entered"]
    # 60 days after the order, on the timer grid (a day)
    assert [day for seg, day in entered if seg == "dormant"] == [60], entered


def test_a_label_timer_on_the_grid_only_matures_labels(tmp_path):
    """A label snapshot can fall due on the timer grid (a timer's rescoring takes it
    there) where no feature window changes: that timer matures the label and does not
    re-evaluate the user."""
    from streams.config import Settings
    from streams.runtime.app import build_models, build_processor

    settings = Settings.from_env({"SEGSTREAM_MODELS_ENABLED": "true",
                                  "SEGSTREAM_TEXT_ANALYZER": "off",
                                  "SEGSTREAM_MODEL_SNAPSHOT_DIR": str(tmp_path)})
    proc = build_processor(settings, build_models(settings))
    state, _ = run(proc, [order(T0 + 3_600_123, "a", 10)])
    grid = -(-T0 // DAY_MS) * DAY_MS
    # a snapshot on the grid five days later; its horizon ends 35 days after the order,
    # where none of the user's windows (1, 7, 30, 60 ... days) ends
    state.pending = [[grid + 5 * DAY_MS, 0, 0.0, 0, *state.pending[0][4:]]]
    due = grid + 5 * DAY_MS + proc.models.cfg.horizon_ms
    assert proc.next_timer(state, due - DAY_MS) != due
    scored = list(state.scored)
    r = proc.fire_timer("u1", state, due)
    assert [m[1] for m in r.matured] == [1] and r.changes == []
    assert r.state.scored == scored and r.state.pending == []
    assert r.state.timer_due == proc.next_timer(state, due)
