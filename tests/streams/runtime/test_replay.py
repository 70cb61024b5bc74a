"""Embedded replay: same processing as the worker, event-time order, nothing dropped."""

from __future__ import annotations

import orjson
import pytest

from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.runtime.app import build_processor
from streams.runtime.replay import replay

DAY = 86_400_000
T0 = 1_700_000_000_000


def order(user, oid, ts, total=100.0):
    return {"type": "order", "event_id": f"{user}-{oid}", "user_id": user, "ts": ts,
            "schema_version": 1, "order_id": oid, "status": "placed", "total": total,
            "currency": "EUR"}


@pytest.fixture
def run(tmp_path):
    settings = Settings.from_env({})

    def _run(lines, **kw):
        f = tmp_path / "in.jsonl"
        f.write_bytes(b"\n".join(lines) + b"\n")
        report = replay(f, tmp_path / "out", processor=build_processor(settings),
                        decoder=EventDecoder.from_settings(settings), **kw)
        read = lambda n: [orjson.loads(x) for x in (tmp_path / "out" / n).open("rb")]  # noqa: E731
        return report, read("changes.jsonl"), read("snapshot.jsonl"), read("dlq.jsonl")

    return _run


def test_out_of_order_file_is_applied_in_event_time_order(run):
    lines = [orjson.dumps(order("a", f"o{i}", T0 + i * DAY, 400)) for i in (2, 0, 1)]
    report, changes, snap, dlq = run(lines, finalize=False)
    assert report.events == 3 and dlq == []
    assert [(c["segment"], c["change"], c["source"]["offset"]) for c in changes] == [
        ("new_customer", "entered", 2), ("vip", "entered", 1)]
    assert snap[0]["segments"] == ["new_customer", "vip"]
    assert snap[0]["features"]["spend_365d"] == 1200


def test_invalid_lines_go_to_the_dlq_file_with_line_and_reason(run):
    lines = [orjson.dumps(order("a", "o1", T0)), b"{broken", b"\xff\xfe\x00",
             orjson.dumps({**order("a", "o2", T0), "status": "lost"})]
    report, _, _, dlq = run(lines)
    assert [(d["line"], d["reason"]) for d in dlq] == [
        (2, "malformed_json"), (3, "malformed_json"), (4, "invalid_enum")]
    assert dlq[0]["original"] == "{broken" and dlq[1]["original_b64"] == "//4A"
    assert report.lines == 4 and report.events == 1
    assert dict(report.dead_letters) == {"malformed_json": 2, "invalid_enum": 1}


def test_finalize_evaluates_everyone_as_of_the_end_of_the_file(run):
    lines = [orjson.dumps(order("a", "o1", T0)), orjson.dumps(order("b", "o1", T0 + 90 * DAY))]
    _, changes, snap, _ = run(lines, finalize=True)
    a = [(c["segment"], c["change"]) for c in changes if c["user_id"] == "a"]
    assert a == [("new_customer", "entered"), ("new_customer", "exited"),
                 ("dormant", "entered")]
    punct = [c for c in changes if c["source"].get("punctuation")]
    assert {c["user_id"] for c in punct} == {"a"}
    assert {s["user_id"]: s["segments"] for s in snap} == {"a": ["dormant"],
                                                         "b": ["new_customer"]}
