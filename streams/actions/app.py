"""The faust app: the web views, and the exactly-once action loop as one of its services.

:func:`create_app` builds a fresh :class:`faust.App` per call (no module-level app).
The inputs are not read by faust agents: faust-streaming 0.15.3's transactions hold
only table changelogs and offsets, not records for topics its consumer does not read
(the actions, the DLQ), so an action record and the state entry that marks its change
as handled could not be written atomically (measured: after a SIGKILL, an action record
written twice in some crash-test runs). The inputs are read by
:class:`streams.actions.loop.ActionLoop`, a confluent-kafka consume-process-produce loop
that writes the actions, the dead letters, the state changelogs and the input offsets in
one Kafka transaction per batch (see that module). The faust worker hosts it (started
and stopped with the app) and serves the HTTP views from the loop's committed state.

State (:class:`streams.actions.loop.Tables`, changelog topics ``<app id>-<table>-changelog``,
co-partitioned with the input topics, rebuilt from them on assignment):

``users``
    user id -> :class:`~streams.actions.engine.UserState` (msgpack): handled change ids,
    coupon times for the frequency cap, profile (segments, scores, reasons), route.
``budgets``
    ``campaign|day|partition`` -> coupons issued that event-time day from that partition.
``churn``
    user id -> handled churn alert ids (keyed by the alert topic's partitioning).

The faust app's own id is ``<app id>-web``: faust's consumer always joins a group (its
leader topic), and it must not join the loop's group ``<app id>`` with another protocol.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os

import faust
import mode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.engine import load_user, profile_answer, route_answer
from streams.actions.loop import ActionLoop, Tables
from streams.metrics import ActionsMetrics

log = logging.getLogger(__name__)

def bearer_ok(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer <token>`` header.

    >>> bearer_ok("Bearer abc", "abc"), bearer_ok("Bearer abd", "abc"), bearer_ok(None, "abc")
    (True, False, False)
    """
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def create_app(config: ActionsConfig, book: CampaignBook | None = None,
               registry: CollectorRegistry | None = None) -> faust.App:
    """Build the actions app for ``config`` (the campaign book is loaded if not given)."""
    campaigns = book if book is not None else CampaignBook.load(config.campaigns_file)
    reg = registry if registry is not None else CollectorRegistry()
    metrics = ActionsMetrics(reg)
    token = config.api_token.get_secret_value()
    n = config.partitions
    tables = Tables()

    def fatal(exc: BaseException) -> None:
        # the loop cannot go on (fenced by a newer instance, broker gone for good, a bug):
        # end the process with an error so that the supervisor restarts it
        logging.shutdown()
        os._exit(3)

    loop = ActionLoop(config, campaigns, metrics, tables, on_fatal=fatal)
    app = faust.App(
        f"{config.app_id}-web",
        broker=config.broker,
        broker_credentials=config.broker_credentials(),
        store="memory://",
        datadir=str(config.state_dir),
        topic_partitions=n,
        topic_replication_factor=config.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_host=config.web_host,
        web_bind=config.web_host,
        web_port=config.web_port,
        web_in_thread=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        # faust's group only holds its leader topic; a short session lets a restarted
        # worker (whose loop starts once faust is ready) rejoin soon after a crash
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )

    @app.service
    class ActionLoopService(mode.Service):
        """Runs the action loop's thread while the app runs."""

        async def on_start(self) -> None:
            loop.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(loop.stop)

    def unauthorized(view: View) -> Response:
        metrics.http.labels("profile", "401").inc()
        return view.json({"error": "unauthorized: send Authorization: Bearer <token>"},
                         status=401, headers={"WWW-Authenticate": 'Bearer realm="segstream"'})

    @app.page("/users/{user_id}/route")
    class RouteView(View):
        """Where customer service should queue a user's questions."""

        async def get(self, request: Request, user_id: str) -> Response:
            stored = tables.user(user_id.encode())
            answer = route_answer(user_id, load_user(stored) if stored else None,
                                  campaigns)
            metrics.http.labels("route", "200").inc()
            return self.json(answer)

    @app.page("/users/{user_id}")
    class ProfileView(View):
        """A user's current segments, scores and reasons (bearer token required)."""

        async def get(self, request: Request, user_id: str) -> Response:
            if not bearer_ok(request.headers.get("Authorization"), token):
                return unauthorized(self)
            stored = tables.user(user_id.encode())
            if stored is None:
                metrics.http.labels("profile", "404").inc()
                return self.json({"error": "unknown user", "user_id": user_id}, status=404)
            metrics.http.labels("profile", "200").inc()
            return self.json(profile_answer(user_id, load_user(stored)))

    @app.page("/metrics")
    class MetricsView(View):
        """Prometheus exposition of the app's metrics."""

        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(reg),
                              content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
