"""Click commands of the enrichment side: ``segstream enrich`` and
``segstream segments describe``.

They read the environment (this is the CLI boundary) into :class:`Settings` and
:class:`EnrichConfig`; nothing below reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry

from streams.config import Settings
from streams.enrich.config import EnrichConfig

ProfileSource = Callable[[], list[dict[str, Any]]]


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and isinstance(obj.get("settings"), Settings):
        return obj["settings"]
    return Settings.from_env(os.environ)


@click.command("enrich")
@click.option("--max-batches", type=int, default=None, help="Stop after N batches (testing).")
@click.option("--idle-exit", type=float, default=None,
              help="Stop after this many seconds without input.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve /metrics on this port (default: none).")
@click.pass_context
def enrich(ctx: click.Context, max_batches: int | None, idle_exit: float | None,
           metrics_port: int | None) -> None:
    """LLM enrichment of shop.reviews into shop.reviews.enriched (needs SEGSTREAM_LLM_*)."""
    from streams.cli import StartupError
    from streams.enrich.stage import build_stage, ensure_enriched_topic
    from streams.http.health import Health
    from streams.http.server import serve
    from streams.kafka.clients import admin
    from streams.metrics import EnrichMetrics

    settings = _settings(ctx)
    config = EnrichConfig.from_env(os.environ)
    if not config.enabled:
        raise StartupError("segstream enrich needs an LLM: set SEGSTREAM_LLM_MODEL and "
                           "SEGSTREAM_LLM_BASE_URL (or OPENAI_API_KEY)")
    metrics = EnrichMetrics(CollectorRegistry())
    if metrics_port:
        # /metrics, /healthz and /readyz for probes and scrapes (ready once running)
        health = Health()
        health.assigned([])
        health.broker_ok()
        serve(metrics.registry, health, None, settings.metrics_host, metrics_port)
    partitions = ensure_enriched_topic(settings, config, admin(settings))
    stage = build_stage(settings, config, metrics)
    signal.signal(signal.SIGTERM, stage.stop)
    signal.signal(signal.SIGINT, stage.stop)
    click.echo(f"enriching {settings.topics.reviews} -> {config.topic_enriched} "
               f"({partitions} partitions) with {config.model}")
    stage.run(max_batches=max_batches, idle_exit_s=idle_exit)


def make_describe_command(load_profiles: ProfileSource | None = None) -> click.Command:
    """``describe`` reading profiles from ``--profiles FILE`` or from ``load_profiles``
    (e.g. the cluster model's current profiles)."""

    @click.command("describe")
    @click.option("--profiles", "profiles_file", type=click.Path(exists=True, dir_okay=False,
                  path_type=Path), default=None, help="JSON list of cluster profiles.")
    @click.option("--cache", "cache_file", type=click.Path(dir_okay=False, path_type=Path),
                  default=Path(".local/segment-descriptions.json"), show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
    def describe(profiles_file: Path | None, cache_file: Path, as_json: bool) -> None:
        """Describe each behavioural cluster in words (LLM when configured, else a template)."""
        from streams.enrich.describe import DescriptionCache, describe_profiles, make_complete
        from streams.features.vector import FEATURE_DOCS

        if profiles_file is not None:
            profiles = json.loads(profiles_file.read_text(encoding="utf-8"))
        elif load_profiles is not None:
            profiles = load_profiles()
        else:
            raise click.UsageError("give --profiles FILE (a JSON list of cluster profiles)")
        if not isinstance(profiles, list):
            raise click.UsageError("the profiles must be a JSON list")
        config = EnrichConfig.from_env(os.environ)
        complete = make_complete(config) if config.enabled else None
        for row in describe_profiles(profiles, complete, DescriptionCache(cache_file),
                                     FEATURE_DOCS):
            if as_json:
                click.echo(json.dumps(row, ensure_ascii=False))
            else:
                click.echo(f"[{row['source']}] {row['text']}")

    return describe


describe = make_describe_command()
