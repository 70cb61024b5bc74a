"""Factories that assemble a worker or a replay from settings (no import-time objects)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from models.segments.policy import SegmentPolicy
from models.text.local import LocalAnalyzer
from streams.config import Settings
from streams.contracts.decode import EventDecoder
from streams.features.vector import FEATURE_NAMES
from streams.metrics import WorkerMetrics
from streams.runtime.processor import Processor
from streams.runtime.runner import Worker


def build_policy(settings: Settings) -> SegmentPolicy:
    return SegmentPolicy.load(settings.segments_file, FEATURE_NAMES)


def build_processor(settings: Settings) -> Processor:
    return Processor(build_policy(settings), lateness_ms=settings.allowed_lateness_s * 1000,
                     dedupe_window_ms=settings.dedupe_window_s * 1000,
                     dedupe_max_ids=settings.dedupe_max_ids,
                     timer_granularity_ms=settings.timer_granularity_s * 1000,
                     analyzer=LocalAnalyzer.default() if settings.text_analyzer == "local"
                     else None,
                     learn_text=settings.text_learn)


def build_worker(
    settings: Settings, registry: CollectorRegistry | None = None, **factories: Any
) -> Worker:
    """Build a :class:`Worker`; ``factories`` may override the Kafka client factories."""
    metrics = WorkerMetrics(registry if registry is not None else CollectorRegistry())
    return Worker(
        settings,
        processor=build_processor(settings),
        decoder=EventDecoder.from_settings(settings),
        metrics=metrics,
        **factories,
    )
