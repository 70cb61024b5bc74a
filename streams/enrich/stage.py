"""The enrichment stage's own consume / produce / commit loop.

Per batch: (1) consume up to ``poll_batch`` reviews; (2) decode each with the worker's
decoder, sending undecodable ones to the dead-letter topic with the same headers the
worker uses (:mod:`streams.kafka.dlq`); (3) enrich the valid ones (LLM or local
fallback, :class:`~streams.enrich.enricher.Enricher`); (4) produce one record per review
to ``shop.reviews.enriched`` on the review's partition number, keyed by ``user_id``, and
flush; (5) only when every output is acknowledged, commit the input offsets
synchronously. A failed delivery stops the stage before the commit, so a restart
re-reads the batch: outputs are at-least-once, and applying one twice changes nothing
(the worker keys them by the review's ``event_id``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.contracts.enriched import EnrichedReview, Origin
from streams.contracts.events import ReviewEvent
from streams.enrich.config import EnrichConfig
from streams.enrich.enricher import Enricher
from streams.exceptions import ConfigError, DeliveryError, InvalidEvent, KafkaIOError
from streams.kafka.clients import consumer_config, producer_config
from streams.kafka.dlq import dlq_headers
from streams.metrics import EnrichMetrics

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[dict[str, Any]], Any]
ProducerFactory = Callable[[dict[str, Any]], Any]


def ensure_enriched_topic(settings: Settings, config: EnrichConfig, admin: AdminClient,
                          timeout: float = 30.0) -> int:
    """Create ``shop.reviews.enriched`` with the reviews topic's partition count, or check
    that an existing one has it (the worker reads both co-partitioned)."""
    md = admin.list_topics(timeout=timeout)
    reviews = md.topics.get(settings.topics.reviews)
    if reviews is None or reviews.error is not None:
        raise ConfigError(f"input topic {settings.topics.reviews} does not exist: run "
                          "'segstream topics create' first")
    n = len(reviews.partitions)
    existing = md.topics.get(config.topic_enriched)
    if existing is not None and existing.error is None:
        if len(existing.partitions) != n:
            raise ConfigError(
                f"{config.topic_enriched} has {len(existing.partitions)} partitions but "
                f"{settings.topics.reviews} has {n}; they must match (co-partitioning): "
                "recreate it or set SEGSTREAM_TOPIC_ENRICHED to a new topic")
        return n
    futures = admin.create_topics([NewTopic(config.topic_enriched, num_partitions=n,
                                            config={"retention.ms": str(7 * 86_400_000)})])
    for fut in futures.values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaIOError(f"cannot create {config.topic_enriched}: {exc}") from exc
    return n


class EnrichStage:
    """Consumes ``shop.reviews`` in its own group and produces the enriched records."""

    def __init__(self, settings: Settings, config: EnrichConfig, enricher: Enricher, *,
                 metrics: EnrichMetrics | None = None,
                 consumer_factory: ConsumerFactory = Consumer,
                 producer_factory: ProducerFactory = Producer,
                 instance: str = "enrich") -> None:
        self.settings = settings
        self.config = config
        self.enricher = enricher
        self.metrics = metrics
        self.instance = instance
        self.decoder = EventDecoder.from_settings(settings)
        self.consumer = consumer_factory(consumer_config(
            settings, **{"group.id": config.group_id, "enable.partition.eof": False}))
        self.producer = producer_factory(producer_config(settings))
        self._stop = threading.Event()
        self._delivery_errors: list[str] = []
        self.batches = 0

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self, max_batches: int | None = None, idle_exit_s: float | None = None) -> None:
        """Loop until :meth:`stop`, ``max_batches`` non-empty batches, or ``idle_exit_s``
        seconds without a message."""
        self.consumer.subscribe([self.settings.topics.reviews])
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                msgs = self.consumer.consume(self.config.poll_batch,
                                             self.settings.poll_timeout_s)
                if not msgs:
                    if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        return
                    continue
                idle_since = time.monotonic()
                self.process_batch(msgs)
                if max_batches is not None and self.batches >= max_batches:
                    return
        finally:
            self.close()

    def close(self) -> None:
        self.enricher.close()
        self.producer.flush(30)
        self.consumer.close()

    def process_batch(self, msgs: list[Message]) -> None:
        """Decode, enrich, produce, flush, then commit; raise before committing when an
        output was not acknowledged."""
        t0 = time.perf_counter()
        positions: dict[tuple[str, int], int] = {}
        reviews: list[tuple[ReviewEvent, Origin | None]] = []
        parts: list[int] = []
        now_ms = int(time.time() * 1000)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            topic, part, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            positions[(topic, part)] = offset + 1
            try:
                event = self.decoder.decode(topic, msg.key(), msg.value(), now_ms)
            except InvalidEvent as exc:
                self._dead_letter(msg, exc)
                continue
            if isinstance(event, ReviewEvent):
                reviews.append((event, Origin(topic=topic, partition=part, offset=offset)))
                parts.append(part)
        if reviews:
            for record, part in zip(self.enricher.enrich(reviews), parts, strict=True):
                self._produce(self.config.topic_enriched, record.user_id.encode(),
                              msgspec.json.encode(record), partition=part)
        remaining = self.producer.flush(120)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(f"{remaining} outputs unacknowledged, "
                                f"{len(errors)} failed ({'; '.join(errors[:3])}); "
                                "input offsets not committed")
        if positions:
            self.consumer.commit(offsets=[TopicPartition(t, p, o)
                                          for (t, p), o in positions.items()],
                                 asynchronous=False)
        self.batches += 1
        if self.metrics:
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)

    # ------------------------------------------------------------------ internals
    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 partition: int | None = None,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.1)

    def _dead_letter(self, msg: Message, exc: InvalidEvent) -> None:
        if self.metrics:
            self.metrics.dlq.labels(exc.reason).inc()
        self._produce(self.settings.topics.dlq, msg.key(), msg.value(),
                      headers=dlq_headers(msg, exc, self.instance))

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")


def build_stage(settings: Settings, config: EnrichConfig, metrics: EnrichMetrics | None = None,
                http_client: Any = None, **kwargs: Any) -> EnrichStage:
    """The stage wired from settings: openai client, breaker, budget, local analyzer."""
    from models.text.local import LocalAnalyzer
    from streams.enrich.breaker import CircuitBreaker
    from streams.enrich.budget import TokenBudget
    from streams.enrich.llm import LLMClient, make_openai_client

    if not config.enabled:
        raise ConfigError("the enrichment stage needs an LLM: set SEGSTREAM_LLM_MODEL and "
                          "SEGSTREAM_LLM_BASE_URL (or OPENAI_API_KEY)")
    llm = LLMClient(make_openai_client(config, http_client), config,
                    CircuitBreaker(config.breaker_failures, config.breaker_reset_s),
                    TokenBudget(config.tokens_per_hour, config.tokens_per_day,
                                config.cost_per_1k_input, config.cost_per_1k_output),
                    metrics)
    enricher = Enricher(llm, LocalAnalyzer.default(), config, metrics)
    return EnrichStage(settings, config, enricher, metrics=metrics, **kwargs)


def decode_record(value: bytes) -> EnrichedReview:
    """Decode one produced record (for tools and tests)."""
    return msgspec.json.decode(value, type=EnrichedReview)
