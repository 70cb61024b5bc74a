"""Dead-letter records: the original key and bytes, with why and where in headers.

The value is exactly the consumed bytes so a fixed producer (or a replay tool) can
re-publish them unchanged; everything segstream adds travels in headers, following the
Kafka Connect convention.
"""

from __future__ import annotations

from confluent_kafka import Message

from streams.exceptions import InvalidEvent

MAX_DETAIL = 1_000


def dlq_headers(
    msg: Message, error: InvalidEvent, worker: str
) -> list[tuple[str, str | bytes | None]]:
    _ts_type, ts = msg.timestamp()
    return [
        ("dlq.reason", error.reason.encode()),
        ("dlq.detail", error.detail[:MAX_DETAIL].encode("utf-8", "replace")),
        ("dlq.source.topic", (msg.topic() or "").encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.source.timestamp", str(ts).encode()),
        ("dlq.worker", worker.encode()),
    ]


def parse_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    """Header list to a dict (for consumers of the DLQ and tests)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or []) if v is not None}
