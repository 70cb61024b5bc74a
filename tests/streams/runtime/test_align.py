"""Event-time alignment across co-partitioned topics."""

from __future__ import annotations

from streams.runtime.align import NO_TS, Aligner

TOPICS = ["clicks", "orders", "reviews"]


def drain(a, caught_up=lambda t, p: True, now=0):
    return [(t, p, o) for t, p, o, _ in a.release(caught_up, now)]


def test_merges_by_event_time_with_topic_order_breaking_ties():
    a = Aligner(TOPICS, max_idle_ms=1000)
    for off, ts in enumerate([10, 20, 30]):
        a.add("clicks", 0, off, ts, None)
    for off, ts in enumerate([15, 20]):
        a.add("orders", 0, off, ts, None)
    assert drain(a) == [("clicks", 0, 0), ("orders", 0, 0), ("clicks", 0, 1),
                        ("orders", 0, 1), ("clicks", 0, 2)]


def test_an_empty_sibling_known_to_be_behind_holds_back_without_timeout():
    a = Aligner(TOPICS, max_idle_ms=500)
    a.add("clicks", 0, 0, 100, None)
    behind = lambda t, p: t != "orders"  # noqa: E731 - orders has unread data
    assert drain(a, behind, now=0) == []
    assert drain(a, behind, now=60_000) == []
    a.add("orders", 0, 0, 150, None)
    assert drain(a, behind, now=60_001) == [("clicks", 0, 0), ("orders", 0, 0)]


def test_an_empty_sibling_not_fetched_yet_holds_back_until_idle():
    a = Aligner(TOPICS, max_idle_ms=500)
    a.add("clicks", 0, 0, 100, None)
    behind = lambda t, p: None if t == "orders" else True  # noqa: E731 - orders unknown
    assert drain(a, behind, now=0) == []
    assert drain(a, behind, now=499) == []
    assert drain(a, behind, now=500) == [("clicks", 0, 0)]
    # once idle, it no longer blocks until it receives data again
    a.add("clicks", 0, 1, 200, None)
    assert drain(a, behind, now=501) == [("clicks", 0, 1)]
    a.add("orders", 0, 0, 50, None)
    a.add("clicks", 0, 2, 300, None)
    assert drain(a, behind, now=502) == [("orders", 0, 0)]


def test_decode_failures_pass_at_the_head_but_never_overtake_their_queue():
    a = Aligner(TOPICS, max_idle_ms=10_000)
    a.add("clicks", 0, 0, 100, None)
    a.add("clicks", 0, 1, NO_TS, None)
    a.add("orders", 0, 0, NO_TS, None)
    behind = lambda t, p: False  # noqa: E731
    # the orders failure is released; clicks waits for the (empty, behind) reviews
    assert drain(a, behind) == [("orders", 0, 0)]
    assert drain(a) == [("clicks", 0, 0), ("clicks", 0, 1)]


def test_partitions_are_independent_and_drop_forgets_them():
    a = Aligner(TOPICS, max_idle_ms=1000)
    a.add("clicks", 0, 0, 5, None)
    a.add("clicks", 1, 0, 1, None)
    assert a.buffered() == 2 and a.buffered(1) == 1
    assert a.drop({1}) == 1
    assert drain(a) == [("clicks", 0, 0)]
    assert a.buffered() == 0


def test_release_stops_at_the_limit_and_keeps_the_rest_buffered():
    a = Aligner(["clicks", "orders"], max_idle_ms=0)
    for i in range(5):
        a.add("clicks", 0, i, ts=100 + i, item=i)
    first = [item for *_, item in a.release(lambda t, p: True, now_ms=0, limit=3)]
    rest = [item for *_, item in a.release(lambda t, p: True, now_ms=0)]
    assert (first, rest, a.buffered()) == ([0, 1, 2], [3, 4], 0)
