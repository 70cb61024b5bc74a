"""The ``actions`` command: run the faust actions app, check campaigns, create topics.

The environment is read here, once, into :class:`ActionsConfig`; bad settings or an
invalid campaign file end the process with exit code 2 and a message saying what to fix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from models.campaigns import CampaignBook
from models.exceptions import ModelsError
from streams.actions.config import ActionsConfig
from streams.exceptions import SegstreamError


class StartupError(click.ClickException):
    """Bad configuration, campaigns or broker at start-up: exit code 2."""

    exit_code = 2


def _config() -> ActionsConfig:
    try:
        return ActionsConfig.from_env(os.environ)
    except SegstreamError as exc:
        raise StartupError(str(exc)) from None


def _book(config: ActionsConfig) -> CampaignBook:
    try:
        return CampaignBook.load(config.campaigns_file)
    except ModelsError as exc:
        raise StartupError(str(exc)) from None


@click.group(invoke_without_command=True)
@click.pass_context
def actions(ctx: click.Context) -> None:
    """Turn segment changes and churn alerts into coupons, routes and alerts.

    Without a subcommand: create the topics and run the app (``run``).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@actions.command()
def run() -> None:
    """Create missing topics and run the faust worker until SIGTERM/SIGINT."""
    import faust  # faust is slow to import; only the running app needs it

    from streams.actions.app import create_app
    from streams.actions.topics import admin, ensure_topics

    config = _config()
    book = _book(config)
    try:
        ensure_topics(config, admin(config))
    except SegstreamError as exc:
        raise StartupError(str(exc)) from None
    config.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config, book)
    logging.getLogger(__name__).info(
        "actions app %s: %d campaigns (%s), web on http://%s:%d", config.app_id,
        len(book.campaigns), book.version, config.web_host, config.web_port)
    worker = faust.Worker(app, loglevel=config.log_level.lower(), quiet=True,
                          redirect_stdouts=False)
    worker.execute_from_commandline()


@actions.command()
def campaigns() -> None:
    """Validate the campaign file and print the campaigns in force (no token needed)."""
    path = os.environ.get("SEGSTREAM_CAMPAIGNS_FILE", "").strip()
    try:
        book = CampaignBook.load(Path(path) if path else None)
    except ModelsError as exc:
        raise StartupError(str(exc)) from None
    cap = book.frequency_cap
    click.echo(f"campaigns {book.version}: frequency cap {cap.coupons} coupon(s) per "
               f"{cap.per_ms // 86_400_000}d, default route {book.default_route.queue}")
    for c in book.campaigns:
        extra = ""
        if c.coupon:
            extra = (f" {c.coupon.type} {c.coupon.value:g} budget/day={c.daily_budget} "
                     f"holdout={c.holdout:.0%}")
        elif c.route:
            extra = f" -> queue {c.route.queue} (priority {c.route.priority})"
        elif c.alert:
            extra = f" -> {c.alert.team} ({c.alert.severity})"
        click.echo(f"  {c.name:28s} {c.trigger.change:7s} {c.trigger.segment:18s} "
                   f"{c.kind}{extra}")


@actions.command()
def topics() -> None:
    """Create the actions app's topics (idempotent)."""
    from streams.actions.topics import admin, ensure_topics

    config = _config()
    try:
        result = ensure_topics(config, admin(config))
    except SegstreamError as exc:
        raise StartupError(str(exc)) from None
    for name, status in result.items():
        click.echo(f"{status:8s} {name}")
