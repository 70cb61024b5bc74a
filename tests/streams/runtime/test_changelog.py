"""Error handling of the changelog restore's watermark lookup (a fake consumer stands in
for the error classes a just-created changelog topic answers with)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.exceptions import KafkaIOError
from streams.runtime import changelog


class _Consumer:
    def __init__(self, errors: list[int]) -> None:
        self.errors = errors
        self.calls = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, 42


@pytest.mark.parametrize("code", [KafkaError.NOT_LEADER_FOR_PARTITION,
                                  KafkaError.LEADER_NOT_AVAILABLE,
                                  KafkaError.UNKNOWN_TOPIC_OR_PART])
def test_a_changelog_without_a_leader_yet_is_asked_again(monkeypatch, code) -> None:
    monkeypatch.setattr(changelog.time, "sleep", lambda s: None)
    c = _Consumer([code, code])
    assert changelog._watermarks(c, TopicPartition("t.changelog", 0)) == (0, 42)  # type: ignore[arg-type]
    assert c.calls == 3


def test_other_errors_fail_with_the_topic_named(monkeypatch) -> None:
    monkeypatch.setattr(changelog.time, "sleep", lambda s: None)
    c = _Consumer([KafkaError.TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaIOError, match=r"t\.changelog\[0\]"):
        changelog._watermarks(c, TopicPartition("t.changelog", 0))  # type: ignore[arg-type]
