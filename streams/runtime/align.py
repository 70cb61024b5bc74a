"""Event-time alignment of co-partitioned input topics.

A user's clicks, orders and reviews arrive on three topics that Kafka fetches
independently. During a backfill or after a pause, one topic can run days ahead of
another in event time; folding a user's events in that order would make the older ones
"late" and change hysteresis decisions. Like Kafka Streams' partition groups, the worker
therefore buffers what it consumed per topic-partition and releases, for each partition
number, the head with the smallest event time - but only while every sibling topic either
has buffered data or is caught up with its log end. A sibling known to be behind its log
end is waited for; one whose position is not known yet blocks for at most
``max_idle_ms`` (Kafka Streams' ``max.task.idle.ms``).

Messages that failed to decode carry no event time; they are released as soon as they
reach the head of their queue, so offsets are still released strictly in log order.

Examples
--------
>>> a = Aligner(["clicks", "orders"], max_idle_ms=1000)
>>> a.add("clicks", 0, 5, ts=300, item="c300")
>>> a.add("clicks", 0, 6, ts=400, item="c400")
>>> [i for _, _, _, i in a.release(lambda t, p: False, now_ms=0)]  # orders has older data
[]
>>> a.add("orders", 0, 9, ts=350, item="o350")
>>> [i for _, _, _, i in a.release(lambda t, p: t == "orders", now_ms=0)]
['c300', 'o350', 'c400']
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger(__name__)

NO_TS = -(2**63)  # decode failures: released as soon as they reach the head


class Aligner:
    """Per-partition-number merge of topic queues by event time.

    Parameters
    ----------
    topics
        The co-partitioned input topics, in a fixed order that breaks event-time ties.
    max_idle_ms
        How long an empty sibling that is behind its log end may hold back the others.
    """

    def __init__(self, topics: Sequence[str], max_idle_ms: int) -> None:
        self.topics = tuple(topics)
        self._rank = {t: i for i, t in enumerate(self.topics)}
        self.max_idle_ms = max_idle_ms
        self._queues: dict[int, dict[str, deque[tuple[int, int, Any]]]] = {}
        self._blocked_since: dict[tuple[str, int], int] = {}
        self._idle_ok: set[tuple[str, int]] = set()

    def add(self, topic: str, partition: int, offset: int, ts: int, item: Any) -> None:
        """Buffer one consumed message (``ts`` = event time, or :data:`NO_TS`)."""
        queues = self._queues.get(partition)
        if queues is None:
            queues = self._queues[partition] = {t: deque() for t in self.topics}
        queues[topic].append((ts, offset, item))
        self._blocked_since.pop((topic, partition), None)
        self._idle_ok.discard((topic, partition))

    def buffered(self, partition: int | None = None) -> int:
        parts = self._queues.values() if partition is None else [
            self._queues.get(partition, {})]
        return sum(len(q) for qs in parts for q in qs.values())

    def queue_sizes(self) -> dict[tuple[str, int], int]:
        return {(t, p): len(q) for p, qs in self._queues.items() for t, q in qs.items()}

    def release(
        self, caught_up: Callable[[str, int], bool | None], now_ms: int,
        limit: int | None = None,
    ) -> Iterator[tuple[str, int, int, Any]]:
        """Yield ``(topic, partition, offset, item)`` in event-time order while safe, at
        most ``limit`` of them (the rest stay buffered for the next call).

        ``caught_up(topic, partition)`` answers True (consumed up to the log end), False
        (known to be behind) or None (not known yet).
        """
        left = limit if limit is not None else -1
        for partition in sorted(self._queues):
            queues = self._queues[partition]
            while True:
                head_topic = None
                head_key: tuple[int, int] | None = None
                blocked = False
                for topic in self.topics:
                    q = queues[topic]
                    if q:
                        key = (q[0][0], self._rank[topic])
                        if head_key is None or key < head_key:
                            head_key, head_topic = key, topic
                    elif self._holds_back(topic, partition, caught_up, now_ms):
                        blocked = True
                if head_topic is None:
                    break
                if blocked and head_key is not None and head_key[0] != NO_TS:
                    break
                if left == 0:
                    return
                left -= 1
                _ts, offset, item = queues[head_topic].popleft()
                yield head_topic, partition, offset, item

    def _holds_back(self, topic: str, partition: int,
                    caught_up: Callable[[str, int], bool | None], now_ms: int) -> bool:
        key = (topic, partition)
        state = caught_up(topic, partition)
        if state is True:
            return False
        if state is False:
            # Known to be behind its log end: the data exists and is on its way (the
            # worker keeps consuming and pauses runaway siblings), so wait for it.
            return True
        # Unknown (never fetched yet): wait at most max_idle_ms.
        if key in self._idle_ok:
            return False
        since = self._blocked_since.setdefault(key, now_ms)
        if now_ms - since >= self.max_idle_ms:
            self._idle_ok.add(key)
            log.info("input idle; releasing its siblings without it",
                     extra={"ctx": {"topic": topic, "partition": partition,
                                    "waited_ms": now_ms - since}})
            return False
        return True

    def drop(self, partitions: set[int]) -> int:
        """Forget buffered messages of revoked partitions; return how many."""
        n = 0
        for p in partitions:
            qs = self._queues.pop(p, None)
            if qs:
                n += sum(len(q) for q in qs.values())
            for t in self.topics:
                self._blocked_since.pop((t, p), None)
                self._idle_ok.discard((t, p))
        return n
