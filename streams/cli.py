"""The ``segstream`` command.

Settings are loaded here, once, from the environment; every subcommand receives them.
Configuration errors end the process with exit code 2 and a message saying what to fix.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from models.exceptions import ModelsError
from streams.config import Settings
from streams.exceptions import ConfigError, KafkaIOError, SegstreamError

STARTUP_ERRORS = (SegstreamError, ModelsError)


class StartupError(click.ClickException):
    """Bad configuration or an unreachable dependency at start-up: exit code 2."""

    exit_code = 2

log = logging.getLogger("segstream")


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group()
@click.option("--log-level", default=None, help="Override SEGSTREAM_LOG_LEVEL.")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """segstream: real-time customer segmentation on Apache Kafka."""
    from streams import logs

    try:
        overrides: dict[str, Any] = {"log_level": log_level.upper()} if log_level else {}
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    logs.configure(settings.log_level, settings.log_json)
    ctx.obj = {"settings": settings, "env": dict(os.environ)}


# ------------------------------------------------------------------------- worker
@cli.command()
@click.option("--max-batches", type=int, default=None, help="Stop after N batches (testing).")
@click.pass_context
def worker(ctx: click.Context, max_batches: int | None) -> None:
    """Run a worker of the consumer group until SIGTERM/SIGINT."""
    _run_worker(ctx, _settings(ctx), max_batches)


@cli.command()
@click.option("--max-batches", type=int, default=None, help="Stop after N batches (testing).")
@click.pass_context
def scoring(ctx: click.Context, max_batches: int | None) -> None:
    """Run a worker of the scoring stage (SEGSTREAM_MODELS_STAGE=separate) until
    SIGTERM/SIGINT: it scores the users the event workers send, learns, and owns the
    segments on model scores. Its group, state and current records are the event
    worker's with "-scoring" and the SEGSTREAM_TOPIC_SCORING_* topics."""
    try:
        s = _settings(ctx).scoring_stage()
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    _run_worker(ctx, s, max_batches)


def _run_worker(ctx: click.Context, s: Settings, max_batches: int | None) -> None:
    from streams.http.config import HttpSettings
    from streams.http.health import Health
    from streams.http.sampler import StatusSampler
    from streams.http.server import StatusServer, serve
    from streams.kafka.clients import admin
    from streams.kafka.topics import check_inputs, configure_group
    from streams.runtime.app import build_worker
    from streams.runtime.memory import limit_malloc_arenas

    limit_malloc_arenas(s.malloc_arenas)  # before any Kafka or RocksDB thread starts
    if s.group_protocol == "classic" and s.processing_guarantee == "exactly_once":
        log.warning("SEGSTREAM_GROUP_PROTOCOL=classic: exactly-once failover between "
                    "workers is tested in CI with the consumer (KIP-848) protocol; use "
                    "classic only with brokers older than Kafka 4.0")
    server: StatusServer | None = None
    try:
        http = HttpSettings.from_env(ctx.obj["env"])
        check_inputs(s, admin(s))
        configure_group(s, admin(s))
        health = Health(broker_timeout_s=http.ready_broker_timeout_s,
                        stall_timeout_s=http.live_stall_timeout_s)
        w = build_worker(s, health=health)
        if s.metrics_port:
            sampler = StatusSampler(w.metrics.registry, http.status_interval_s,
                                    http.status_points)
            server = serve(w.metrics.registry, health, sampler, s.metrics_host,
                           s.metrics_port)
    except STARTUP_ERRORS as exc:
        raise StartupError(str(exc)) from None
    w.install_signal_handlers()
    try:
        w.run(max_batches=max_batches)
    except KafkaIOError as exc:
        raise StartupError(str(exc)) from None
    finally:
        if server is not None:
            server.close()


# ------------------------------------------------------------------------- topics
@cli.group()
def topics() -> None:
    """Create, list or delete segstream's topics."""


@topics.command("create")
@click.pass_context
def topics_create(ctx: click.Context) -> None:
    """Create missing topics (idempotent) with partitions and compaction settings."""
    from streams.kafka.clients import admin
    from streams.kafka.topics import create_topics, topic_specs

    s = _settings(ctx)
    result = create_topics(s, admin(s))
    for spec in topic_specs(s):
        extra = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        click.echo(f"{result[spec.name]:8} {spec.name:22} partitions={spec.partitions} {extra}")


@topics.command("list")
@click.pass_context
def topics_list(ctx: click.Context) -> None:
    """Show segstream's topics as the broker has them."""
    from streams.kafka.clients import admin
    from streams.kafka.topics import topic_specs

    s = _settings(ctx)
    md = admin(s).list_topics(timeout=15)
    for spec in topic_specs(s):
        t = md.topics.get(spec.name)
        click.echo(f"{spec.name:22} " + (f"partitions={len(t.partitions)}" if t else "missing"))


@topics.command("delete")
@click.confirmation_option(prompt="Delete all segstream topics and their data?")
@click.pass_context
def topics_delete(ctx: click.Context) -> None:
    """Delete segstream's topics (all data in them is lost)."""
    from streams.kafka.clients import admin
    from streams.kafka.topics import delete_topics

    delete_topics(_settings(ctx), admin(_settings(ctx)))
    click.echo("deleted")


# ----------------------------------------------------------------------- simulate
@cli.command()
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--rate", type=float, default=0.0, show_default=True,
              help="Events per second; 0 = as fast as the broker takes them.")
@click.option("--days", type=int, default=90, show_default=True,
              help="Simulated history span ending now.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write JSONL to this file instead of producing to Kafka.")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Write the user -> persona ground truth (JSON) here.")
@click.pass_context
def simulate(ctx: click.Context, users: int, events: int, rate: float, days: int, seed: int,
             out: Path | None, truth: Path | None) -> None:
    """Produce realistic shop traffic drawn from personas."""
    from streams.sim.generator import generate

    s = _settings(ctx)
    sim = generate(users, events, seed=seed, end_ms=int(time.time() * 1000), days=days)
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_bytes(orjson.dumps(sim.truth, option=orjson.OPT_INDENT_2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with out.open("wb") as fh:
            for ev in sim.events():
                fh.write(orjson.dumps(ev) + b"\n")
                n += 1
        click.echo(f"wrote {n} events for {users} users to {out}")
        return
    n, secs = _produce_events(s, sim.events(), rate)
    click.echo(f"produced {n} events for {users} users in {secs:.1f}s "
               f"({n / secs if secs else 0:.0f} events/s)")


def _produce_events(s: Settings, events: Any, rate: float) -> tuple[int, float]:
    from confluent_kafka import Producer

    from streams.kafka.clients import producer_config

    producer = Producer(producer_config(s, None, **{"linger.ms": 20, "batch.size": 1_000_000}))
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    topic_of = {"click": s.topics.clicks, "order": s.topics.orders, "review": s.topics.reviews}
    started = time.perf_counter()
    n = 0
    for ev in events:
        while True:
            try:
                producer.produce(topic_of[ev["type"]], key=ev["user_id"].encode(),
                                 value=orjson.dumps(ev), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
            if rate > 0:
                ahead = n / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if n % 50_000 == 0:
            log.info("simulator progress", extra={"ctx": {"produced": n}})
    producer.flush(120)
    if errors:
        raise click.ClickException(f"{len(errors)} events not delivered: {errors[:3]}")
    return n, time.perf_counter() - started


# ------------------------------------------------------------------------- replay
@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("replay-out"),
              show_default=True)
@click.option("--sorted", "assume_sorted", is_flag=True,
              help="The file is already in event-time order: stream it instead of sorting.")
@click.option("--finalize/--no-finalize", default=True, show_default=True,
              help="Re-evaluate every user as of the file's last event time at the end.")
@click.option("--partitions", type=int, default=0, show_default=True,
              help="Advance event time per partition as a worker with this many input "
                   "partitions does (0: one clock for all users).")
@click.pass_context
def replay(ctx: click.Context, file: Path, out_dir: Path, assume_sorted: bool,
           finalize: bool, partitions: int) -> None:
    """Run the worker's processing over a JSONL FILE in-process, without Kafka."""
    from streams.contracts.decode import EventDecoder
    from streams.runtime.app import build_models, build_processor
    from streams.runtime.replay import replay as run_replay

    s = _settings(ctx)
    try:
        models = build_models(s)
        processor = build_processor(s, models)
    except STARTUP_ERRORS as exc:
        raise StartupError(str(exc)) from None
    report = run_replay(file, out_dir, processor=processor,
                        decoder=EventDecoder.from_settings(s), assume_sorted=assume_sorted,
                        finalize=finalize, partitions=partitions)
    if models is not None:
        from models.learn.snapshot import save

        path = save(models, out_dir / "models", {}, keep=1)
        click.echo(f"models: prequential evaluation in summary.json; snapshot {path} "
                   f"(segstream models report {out_dir / 'models'})")
    click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    click.echo(f"changes: {out_dir / 'changes.jsonl'}  snapshot: {out_dir / 'snapshot.jsonl'}"
               f"  dead letters: {out_dir / 'dlq.jsonl'}")


@cli.command("retail-convert")
@click.argument("csv_gz", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
def retail_convert(csv_gz: Path, out: Path) -> None:
    """Turn the UCI Online Retail CSV(.gz) into order events (JSONL)."""
    from streams.sim.retail import load_retail_orders, write_jsonl

    events, stats = load_retail_orders(csv_gz)
    write_jsonl(events, out)
    click.echo(f"wrote {len(events)} order events to {out}")
    click.echo(str(stats))


# -------------------------------------------------------------------------- watch
@cli.command()
@click.option("--from-beginning", is_flag=True, help="Start at the oldest change.")
@click.option("--max", "max_changes", type=int, default=0, help="Stop after N changes.")
@click.option("--idle-exit", type=float, default=0.0,
              help="Stop after this many seconds without a change (0 = never).")
@click.pass_context
def watch(ctx: click.Context, from_beginning: bool, max_changes: int, idle_exit: float) -> None:
    """Print segment changes as they happen."""
    _tail(_settings(ctx), _settings(ctx).topics.changes, from_beginning, max_changes, idle_exit,
          _format_change)


@cli.command("dlq")
@click.option("--from-beginning/--from-now", default=True)
@click.option("--max", "max_records", type=int, default=0)
@click.option("--idle-exit", type=float, default=5.0)
@click.pass_context
def dlq_cmd(ctx: click.Context, from_beginning: bool, max_records: int, idle_exit: float) -> None:
    """Print dead-lettered messages with their reason and source position."""
    _tail(_settings(ctx), _settings(ctx).topics.dlq, from_beginning, max_records, idle_exit,
          _format_dlq)


def _tail(s: Settings, topic: str, from_beginning: bool, limit: int, idle_exit: float,
          fmt: Callable[[Any], str]) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer({**s.kafka_common(), "group.id": f"segstream-watch-{time.time_ns()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest" if from_beginning else "latest"})
    consumer.subscribe([topic])
    n = 0
    last = time.monotonic()
    try:
        while not limit or n < limit:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if idle_exit and time.monotonic() - last > idle_exit:
                    break
                continue
            last = time.monotonic()
            click.echo(fmt(msg))
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _format_change(msg: Any) -> str:
    ch = orjson.loads(msg.value())
    sign = "+" if ch["change"] == "entered" else "-"
    why = ", ".join(r["text"] if "op" not in r else
                    f"{r['feature']}={r['value']:g} {r['op']} {r['threshold']:g}"
                    for r in ch["reasons"])
    return f"{ch['at']}  {ch['user_id']:>10}  {sign}{ch['segment']:<16} {why}"


def _format_dlq(msg: Any) -> str:
    from streams.kafka.dlq import parse_headers

    h = parse_headers(msg.headers())
    preview = (msg.value() or b"")[:80]
    return (f"{h.get('dlq.reason', '?'):<22} {h.get('dlq.source.topic')}"
            f"[{h.get('dlq.source.partition')}]@{h.get('dlq.source.offset')}  "
            f"{h.get('dlq.detail', '')[:80]}  value={preview!r}")


# ----------------------------------------------------------------------- segments
@cli.command("erase")
@click.option("--user", "user_ids", multiple=True, required=True,
              help="User id to forget (repeatable).")
@click.option("--request-id", default=None, help="Reference kept in the audit record.")
@click.option("--requested-by", default=None, help="Who asked (kept in the audit record).")
@click.pass_context
def erase_cmd(ctx: click.Context, user_ids: tuple[str, ...], request_id: str | None,
              requested_by: str | None) -> None:
    """Ask the workers to forget users (right to be forgotten) via the erase topic.

    The worker owning each user deletes its state, tombstones the changelog and
    segments.current, drops pending labels and timers, and writes an audit record to
    the audit topic.
    """
    import uuid

    from confluent_kafka import Producer

    from streams.contracts.erase import erase_request
    from streams.kafka.clients import producer_config

    s = _settings(ctx)
    producer = Producer(producer_config(s, None))
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err.str())

    now = int(time.time() * 1000)
    for user in user_ids:
        rid = request_id or f"erase-{uuid.uuid4()}"
        producer.produce(s.topics.erase, key=user.encode(),
                         value=erase_request(user, rid, now, requested_by),
                         on_delivery=on_delivery)
        click.echo(f"erase requested  {rid}")
    if producer.flush(30) or errors:
        raise StartupError(f"erase requests not acknowledged: {errors[:3]}")


@cli.group("segments", invoke_without_command=True)
@click.pass_context
def segments_cmd(ctx: click.Context) -> None:
    """Show the segment policy in force (validates SEGSTREAM_SEGMENTS_FILE)."""
    from streams.runtime.app import build_policy

    if ctx.invoked_subcommand is not None:
        return

    try:
        policy = build_policy(_settings(ctx))
    except STARTUP_ERRORS as exc:
        raise StartupError(str(exc)) from None
    click.echo(f"policy version {policy.version}")
    for d in policy.describe():
        click.echo(f"  {d['segment']:<18} dwell {d['min_dwell_ms'] // 1000:>8}s  "
                   f"{d['description']}")


@cli.command("features")
def features_cmd() -> None:
    """List the feature names segment rules can use."""
    from streams.features.vector import FEATURE_DOCS, FEATURE_NAMES

    for name in FEATURE_NAMES:
        click.echo(f"{name:<40} {FEATURE_DOCS.get(name, '')}")


def _cluster_profiles() -> list[dict[str, Any]]:
    """The behavioural clusters of the newest valid model snapshot."""
    from models.learn.snapshot import load_newest_valid

    cfg = Settings.from_env().models
    found = load_newest_valid(cfg.snapshot_dir)
    if found is None:
        raise click.UsageError(f"no model snapshot in {cfg.snapshot_dir} (run the worker "
                               "with SEGSTREAM_MODELS_ENABLED=true, or give --profiles)")
    return found[0].cluster_profiles()


def _register_subcommands() -> None:
    """Commands of the other processes (enrichment, actions, models), added lazily so
    that importing the CLI does not import their heavy dependencies' state."""
    from models.learn.cli import models
    from streams.actions.cli import actions
    from streams.enrich.cli import enrich, make_describe_command

    cli.add_command(enrich)
    cli.add_command(actions)
    cli.add_command(models)
    segments_cmd.add_command(make_describe_command(load_profiles=_cluster_profiles))


_register_subcommands()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except STARTUP_ERRORS as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
