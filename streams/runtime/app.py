"""Factories that assemble a worker or a replay from settings (no import-time objects)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry

from models.learn.snapshot import load_newest_valid
from models.learn.suite import ModelSuite
from models.segments.policy import SegmentPolicy
from models.text.local import LocalAnalyzer
from streams.config import Settings
from streams.contracts.decode import EventDecoder, ScoringDecoder
from streams.exceptions import ConfigError
from streams.features.vector import FEATURE_NAMES
from streams.metrics import ModelMetrics, WorkerMetrics
from streams.runtime.feed import ScoringFeed
from streams.runtime.processor import Processor
from streams.runtime.runner import Worker
from streams.runtime.scoring import ScoringProcessor

log = logging.getLogger(__name__)

# What the models add to the features segment rules can read (models.learn.suite.Scores).
MODEL_FEATURES = ("churn_score", "value_pct", "cluster")


def build_policy(settings: Settings) -> SegmentPolicy:
    """The segment policy: ``SEGSTREAM_SEGMENTS_FILE``, else the packaged default (with
    the model-driven segments when the models are on)."""
    names = (*FEATURE_NAMES, *MODEL_FEATURES) if settings.models.enabled else FEATURE_NAMES
    if settings.segments_file is None and settings.models.enabled:
        path = resources.files("models.segments").joinpath("with_models.yaml")
        with resources.as_file(path) as p:
            return SegmentPolicy.load(p, names)
    return SegmentPolicy.load(settings.segments_file, names)


def build_models(settings: Settings) -> ModelSuite | None:
    """The newest valid snapshot of the suite, or a fresh suite; None when models are off
    (or run in a scoring stage of their own and this is the event worker)."""
    cfg = settings.models
    if not cfg.enabled or (settings.models_stage == "separate" and settings.role != "scoring"):
        return None
    found = load_newest_valid(cfg.snapshot_dir)
    if found is None:
        log.info("no model snapshot; starting fresh models",
                 extra={"ctx": {"dir": str(cfg.snapshot_dir)}})
        return ModelSuite(cfg)
    suite, meta = found
    suite.cfg = cfg  # thresholds and policies come from this process's configuration
    log.info("model snapshot loaded", extra={"ctx": {
        "model_version": suite.model_version, "created": meta.get("created"),
        "offsets": len(meta.get("offsets", {}))}})
    return suite


def build_processor(settings: Settings, models: ModelSuite | None = None) -> Processor:
    """The processor of the settings' role: the event worker's (models inline, or sending
    users to a separate scoring stage) or the scoring stage's."""
    policy = build_policy(settings)
    if settings.models_stage == "separate":
        rules, on_scores = policy.split(MODEL_FEATURES)
        if settings.role == "scoring":
            if models is None:
                raise ConfigError("the scoring stage needs the models "
                                  "(SEGSTREAM_MODELS_ENABLED=true)")
            return ScoringProcessor(on_scores, models,
                                    dedupe_window_ms=settings.dedupe_window_s * 1000,
                                    dedupe_max_ids=settings.dedupe_max_ids)
        feed = ScoringFeed(settings.models, extra=on_scores.features() - set(MODEL_FEATURES))
        return _event_processor(settings, rules, None, feed)
    return _event_processor(settings, policy, models, None)


def _event_processor(settings: Settings, policy: SegmentPolicy, models: ModelSuite | None,
                     feed: ScoringFeed | None) -> Processor:
    return Processor(policy, lateness_ms=settings.allowed_lateness_s * 1000,
                     dedupe_window_ms=settings.dedupe_window_s * 1000,
                     dedupe_max_ids=settings.dedupe_max_ids,
                     timer_granularity_ms=settings.timer_granularity_s * 1000,
                     analyzer=LocalAnalyzer.default() if settings.text_analyzer == "local"
                     else None,
                     learn_text=settings.text_learn,
                     models=models, feed=feed)


def build_worker(
    settings: Settings, registry: CollectorRegistry | None = None, **factories: Any
) -> Worker:
    """Build a :class:`Worker`; ``factories`` may override the Kafka client factories."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = WorkerMetrics(registry)
    models = build_models(settings)
    decoder: EventDecoder | ScoringDecoder = (
        ScoringDecoder(max_bytes=settings.max_event_bytes) if settings.role == "scoring"
        else EventDecoder.from_settings(settings))
    return Worker(
        settings,
        processor=build_processor(settings, models),
        decoder=decoder,
        metrics=metrics,
        model_metrics=ModelMetrics(registry) if models is not None else None,
        **factories,
    )
