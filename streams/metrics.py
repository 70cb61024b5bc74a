"""Every Prometheus metric of the worker, built against a registry passed in.

Label values are bounded sets only (topic names, event types, DLQ reasons, segment
names, partitions): never a user id, order id or free text, so cardinality stays flat
however many users there are.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """The worker's metric families (names are part of the operations contract)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "segstream_events_consumed_total", "Input messages consumed, by topic and outcome",
            ["topic", "type"], registry=registry)
        self.dlq = Counter(
            "segstream_dlq_total", "Messages sent to the dead-letter topic, by reason",
            ["reason"], registry=registry)
        self.changes = Counter(
            "segstream_segment_changes_total", "Segment changes emitted",
            ["segment", "change"], registry=registry)
        self.outputs = Counter(
            "segstream_outputs_total", "Output records acknowledged by the broker, by topic",
            ["topic"], registry=registry)
        self.batch_size = Histogram(
            "segstream_batch_size", "Messages per consumed batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000), registry=registry)
        self.commit_seconds = Histogram(
            "segstream_commit_seconds", "Duration of the flush/store/commit sequence",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.e2e_event_seconds = Histogram(
            "segstream_e2e_event_time_seconds",
            "Event time to segment change acknowledged by the broker",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.e2e_append_seconds = Histogram(
            "segstream_e2e_append_time_seconds",
            "Broker append (or create) time of the input to segment change acknowledged",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.lag = Gauge(
            "segstream_consumer_lag", "Messages behind the high watermark, per partition",
            ["topic", "partition"], registry=registry)
        self.assigned = Gauge(
            "segstream_assigned_partitions", "Input partitions currently assigned",
            registry=registry)
        self.store_users = Gauge(
            "segstream_state_store_users", "Users held in the local state stores (estimate)",
            registry=registry)
        self.consumer_errors = Counter(
            "segstream_consumer_errors_total", "Non-fatal consumer errors, by code",
            ["code"], registry=registry)
        self.commit_failures = Counter(
            "segstream_commit_failures_total", "Offset commits the group refused",
            registry=registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
