"""Errors raised by the streaming side of segstream.

Errors are translated at the boundary they cross: a Kafka error becomes a
:class:`KafkaIOError`, bad operator input becomes a :class:`ConfigError` at start-up,
and a bad event becomes an :class:`InvalidEvent` that the runner turns into a
dead-letter record instead of a crash.
"""

from __future__ import annotations


class SegstreamError(Exception):
    """Base class of every error segstream raises on purpose."""


class ConfigError(SegstreamError):
    """The configuration cannot work; the message says which setting to fix."""


class InvalidEvent(SegstreamError):
    """An input message that must go to the dead-letter topic.

    ``reason`` is a short, bounded token (used as a metric label and DLQ header);
    ``detail`` is the human explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class KafkaIOError(SegstreamError):
    """A Kafka operation failed in a way the runner cannot recover from by itself."""


class DeliveryError(KafkaIOError):
    """An output record was not acknowledged by the broker."""
