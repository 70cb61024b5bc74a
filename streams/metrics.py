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
        self.process_seconds = Histogram(
            "segstream_batch_process_seconds",
            "Time the worker loop spent processing one consumed batch (decode, alignment, "
            "features, models, policy, outputs queued); with segstream_commit_seconds, its "
            "rate is the share of time the loop is busy",
            buckets=LATENCY_BUCKETS, registry=registry)
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
        self.transaction_seconds = Histogram(
            "segstream_transaction_seconds",
            "Duration of a batch's transaction: flush, send offsets, commit",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.transaction_aborts = Counter(
            "segstream_transaction_aborts_total",
            "Transactions aborted and rewound to the committed position, by error kind",
            ["reason"], registry=registry)
        self.restore_records = Counter(
            "segstream_restore_records_total", "Changelog records applied while restoring",
            ["partition"], registry=registry)
        self.restore_remaining = Gauge(
            "segstream_restore_remaining", "Changelog records left to restore",
            ["partition"], registry=registry)
        self.restore_seconds = Histogram(
            "segstream_restore_seconds", "Time to restore a partition's state store",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=registry)
        self.duplicates = Counter(
            "segstream_duplicates_total",
            "Events ignored because the user's state had seen their event_id", ["topic"],
            registry=registry)
        self.erasures = Counter(
            "segstream_erasures_total", "Completed right-to-be-forgotten requests",
            registry=registry)
        self.scoring_requests = Counter(
            "segstream_scoring_requests_total",
            "Users sent to a separate scoring stage (SEGSTREAM_MODELS_STAGE=separate)",
            registry=registry)
        self.timers_fired = Counter(
            "segstream_timers_fired_total",
            "Time-based re-evaluations (event-time watermark or wall-clock punctuation)",
            ["trigger"], registry=registry)
        self.segment_members = Gauge(
            "segstream_segment_members", "Users currently in a segment (this worker's "
            "partitions; sum over workers)", ["segment"], registry=registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


class ModelMetrics:
    """Online-model quality and health (``models.learn``), refreshed from the suite.

    Gauges rather than counters for learned/scored/drift totals would lose resets; these
    mirror the suite's own monotonic counters, so they are set by difference.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ["model", "window"]
        self.auc = Gauge("segstream_model_auc", "Prequential ROC AUC", labels,
                         registry=registry)
        self.logloss = Gauge("segstream_model_logloss", "Prequential log loss", labels,
                             registry=registry)
        self.accuracy = Gauge("segstream_model_accuracy", "Prequential accuracy", labels,
                              registry=registry)
        self.precision = Gauge("segstream_model_precision", "Prequential precision", labels,
                               registry=registry)
        self.recall = Gauge("segstream_model_recall", "Prequential recall", labels,
                            registry=registry)
        self.confusion = Gauge("segstream_model_confusion", "Prequential confusion matrix",
                               ["model", "actual", "predicted"], registry=registry)
        self.mae = Gauge("segstream_model_mae", "Prequential mean absolute error", labels,
                         registry=registry)
        self.drift = Counter("segstream_model_drift", "Drift detections", ["model"],
                             registry=registry)
        self.learned = Counter("segstream_model_learned", "Examples learnt", ["model"],
                               registry=registry)
        self.scored = Counter("segstream_model_scored", "Scorings", ["model"],
                              registry=registry)
        self.snapshot_age = Gauge("segstream_model_snapshot_age_seconds",
                                  "Seconds since the newest model snapshot was written",
                                  registry=registry)
        self.snapshot_bytes = Gauge("segstream_model_snapshot_bytes",
                                    "Size of the newest model snapshot", registry=registry)
        self._seen: dict[tuple[str, str], float] = {}

    def refresh(self, suite: object, snapshot_created: float | None = None,
                snapshot_bytes: int | None = None, now: float | None = None) -> None:
        """Copy the suite's prequential report into the families (call every few s)."""
        import time

        report = suite.report()  # type: ignore[attr-defined]
        churn = report["churn"]
        gauges = {"auc": self.auc, "logloss": self.logloss, "accuracy": self.accuracy,
                  "precision": self.precision, "recall": self.recall}
        for window in ("overall", "rolling"):
            for name, gauge in gauges.items():
                v = churn[window][name]
                if v is not None:
                    gauge.labels("churn", window).set(v)
            mae = report["value"][window]["mae"]
            if mae is not None:
                self.mae.labels("value", window).set(mae)
        for actual, row in churn["confusion"].items():
            for predicted, n in row.items():
                self.confusion.labels("churn", actual, predicted).set(n)
        for family, key in ((self.drift, "drift"), (self.learned, "learned"),
                            (self.scored, "scored")):
            for model, total in report[key].items():
                seen = self._seen.get((key, model), 0.0)
                if total > seen:
                    family.labels(model).inc(total - seen)
                self._seen[(key, model)] = max(seen, float(total))
        if snapshot_created is not None:
            self.snapshot_age.set(max(0.0, (now or time.time()) - snapshot_created))
        if snapshot_bytes is not None:
            self.snapshot_bytes.set(snapshot_bytes)


class ActionsMetrics:
    """The actions app's metric families (served on ``/metrics`` by its web server).

    Campaign names come from the validated campaign file, so they are a bounded label set.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.inputs = Counter(
            "segstream_actions_inputs_total",
            "Input records by topic role and outcome (processed, duplicate, stale, dlq)",
            ["role", "outcome"], registry=registry)
        self.decisions = Counter(
            "segstream_actions_decisions_total",
            "Campaign decisions by campaign and outcome (issued, holdout, frequency_cap, "
            "budget_exhausted, routed, alerted)", ["campaign", "outcome"], registry=registry)
        self.actions = Counter(
            "segstream_actions_produced_total", "Action records produced, by kind",
            ["kind"], registry=registry)
        self.dlq = Counter(
            "segstream_actions_dlq_total", "Input records dead-lettered, by reason",
            ["reason"], registry=registry)
        self.http = Counter(
            "segstream_actions_http_requests_total", "HTTP lookups by endpoint and status",
            ["endpoint", "status"], registry=registry)
        self.process_seconds = Histogram(
            "segstream_actions_process_seconds",
            "Time to decide and hand one input record's actions to the producer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=registry)


class EnrichMetrics:
    """The LLM enrichment stage's metric families (labels are bounded tokens only)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "segstream_llm_requests_total",
            "LLM requests by outcome (ok, invalid, rate_limited, server_error, timeout, "
            "connection, rejected)", ["outcome"], registry=registry)
        self.latency = Histogram(
            "segstream_llm_request_seconds", "Duration of one LLM request",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.errors = Counter(
            "segstream_llm_errors_total", "Failed LLM attempts by kind", ["kind"],
            registry=registry)
        self.tokens = Counter(
            "segstream_llm_tokens_total", "Tokens used, by direction (prompt, completion)",
            ["direction"], registry=registry)
        self.cost = Counter(
            "segstream_llm_cost_total", "Money spent on LLM requests (configured prices)",
            registry=registry)
        self.cache = Counter(
            "segstream_llm_cache_total", "Cache look-ups by result (hit, miss, error_hit)",
            ["result"], registry=registry)
        self.fallbacks = Counter(
            "segstream_llm_fallbacks_total",
            "Reviews given the local analysis instead of the LLM's, by reason",
            ["reason"], registry=registry)
        self.breaker_state = Gauge(
            "segstream_llm_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=registry)
        self.reviews = Counter(
            "segstream_enrich_reviews_total", "Enriched records produced, by source",
            ["source"], registry=registry)
        self.dlq = Counter(
            "segstream_enrich_dlq_total", "Undecodable reviews sent to the DLQ, by reason",
            ["reason"], registry=registry)
        self.batch_seconds = Histogram(
            "segstream_enrich_batch_seconds", "Consume to commit, per batch",
            buckets=LATENCY_BUCKETS, registry=registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose ``/metrics`` on ``host:port`` in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


class AnalyzerMetrics:
    """The inline local text analyzer's cost and learning, as seen by the worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "segstream_text_analyze_seconds", "Local analysis of one review",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1),
            registry=registry)
        self.learned = Counter(
            "segstream_text_learned_total", "Online model updates, by signal (rating, llm)",
            ["signal"], registry=registry)
        self.enrichments = Counter(
            "segstream_text_enrichments_applied_total",
            "Enriched results folded into user state, by source", ["source"],
            registry=registry)
