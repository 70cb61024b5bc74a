"""The faust app: agents, tables and web views around the pure engine.

:func:`create_app` builds a fresh :class:`faust.App` per call (no module-level app).
The agents are thin: decode at the boundary (invalid -> DLQ with the original bytes),
read the user's state from a table, call :func:`streams.actions.engine.handle_change`,
produce the actions, write the state back.

Tables (changelog-backed, co-partitioned with the change topic):

``users``
    user id -> :class:`~streams.actions.engine.UserState` (msgpack): handled change ids,
    coupon times for the frequency cap, profile (segments, scores, reasons), route.
``budgets``
    ``campaign|day|partition`` -> coupons issued that event-time day from that partition.
``churn``
    user id -> handled churn alert ids (keyed by the alert topic's partitioning).

Exactly one action per change rests on the ``users`` table, not on Kafka transactions:
``action_id`` is a hash of the change's ``event_id`` and the campaign, and a change
whose id the table holds yields nothing. Per change the agent, without yielding to the
event loop, (1) queues the actions, (2) writes the table, (3) acks the input. The
actions and the table's changelog record leave through faust's one send buffer in that
order, and faust flushes the producer before it commits offsets. A redelivered change
(restart, rebalance, upstream retry) therefore finds its id, in the live table or in the
changelog the table is restored from. The remaining gap is a crash between the broker's
acknowledgements of the actions and of the changelog record queued right behind them
(usually one produce request): that change's actions are then produced again,
byte-identical (same ``action_id``, same coupon code), never a second, different coupon.
Only if the changelog record overtook the actions inside the producer would they be
lost instead.

The tables use faust's memory store, rebuilt from the changelog at start-up: its RocksDB
store writes locally before the changelog record is sent, so after a crash the local
state can hold a change as handled whose actions never reached the broker (measured:
lost coupons in the crash test).

``processing_guarantee="exactly_once"`` is accepted but not the default: faust-streaming
0.15.3 puts only the changelog records and offsets in its transactions, while records
for topics its consumer does not read (the actions, the DLQ) go through the plain
producer (their partition argument is even dropped). After a crash the aborted
changelog records take the de-duplication state of a whole commit interval with them,
which is a wider gap than at-least-once has.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.contracts import decode_change, decode_churn_alert
from streams.actions.engine import (
    AlertAction,
    ChurnAlertAction,
    CouponAction,
    HoldoutAction,
    RouteAction,
    Rules,
    budget_key,
    budget_share,
    dump_state,
    encode,
    handle_change,
    handle_churn_alert,
    load_churn,
    load_user,
    profile_answer,
    route_answer,
)
from streams.exceptions import InvalidEvent
from streams.metrics import ActionsMetrics

log = logging.getLogger(__name__)

_KIND: dict[type, str] = {CouponAction: "coupon", HoldoutAction: "holdout", RouteAction: "route",
         AlertAction: "alert", ChurnAlertAction: "churn_alert"}


def dlq_headers(event: faust.types.EventT, error: InvalidEvent, worker: str
                ) -> list[tuple[str, bytes]]:
    """The DLQ headers of :mod:`streams.kafka.dlq`, from a faust event."""
    msg = event.message
    return [
        ("dlq.reason", error.reason.encode()),
        ("dlq.detail", error.detail[:1000].encode("utf-8", "replace")),
        ("dlq.source.topic", msg.topic.encode()),
        ("dlq.source.partition", str(msg.partition).encode()),
        ("dlq.source.offset", str(msg.offset).encode()),
        ("dlq.source.timestamp", str(int(msg.timestamp * 1000)).encode()),
        ("dlq.worker", worker.encode()),
    ]


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
    rules = Rules(book=campaigns, holdout_seed=config.holdout_seed)
    reg = registry if registry is not None else CollectorRegistry()
    metrics = ActionsMetrics(reg)
    token = config.api_token.get_secret_value()
    n = config.partitions
    app = faust.App(
        config.app_id,
        broker=config.broker,
        broker_credentials=config.broker_credentials(),
        store="rocksdb://" if config.store == "rocksdb" else "memory://",
        datadir=str(config.state_dir),
        processing_guarantee=config.guarantee,
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
        producer_acks=-1,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                           "value_serializer": "raw", "partitions": n}
    t = config.topics
    changes = app.topic(t.changes, **raw)
    churn_in = app.topic(t.churn, **raw)
    dlq = app.topic(t.dlq, **raw)
    out = {"coupon": app.topic(t.coupons, **raw), "holdout": app.topic(t.holdout, **raw),
           "route": app.topic(t.vip_routing, **raw), "alert": app.topic(t.alerts, **raw),
           "churn_alert": app.topic(t.churn_alerts, **raw)}
    table: dict[str, Any] = {"default": None, "key_type": bytes, "value_type": bytes,
                             "partitions": n}
    users = app.Table("users", help="per-user action state", **table)
    budgets = app.Table("budgets", help="coupons issued per campaign, day, partition", **table)
    churn_seen = app.Table("churn", help="handled churn alert ids per user", **table)

    # Everything an input record causes goes through faust's send buffer with no await
    # in between: the actions first, then the table's changelog record, then the ack.
    # The buffer drains in order into one producer, so the changelog record reaches the
    # broker with (in practice: in the same request as) the actions it guards.
    def dead_letter(event: faust.types.EventT, exc: InvalidEvent, role: str) -> None:
        dlq.send_soon(key=event.key, value=event.value or b"",
                      partition=event.message.partition,
                      headers=dlq_headers(event, exc, config.app_id))
        event.ack()
        metrics.dlq.labels(exc.reason).inc()
        metrics.inputs.labels(role, "dlq").inc()

    def produce(key: bytes, partition: int, actions: list[Any]) -> None:
        # The input's partition number: a user's actions stay on one partition, in order.
        for a in actions:
            kind = _KIND[type(a)]
            out[kind].send_soon(key=key, value=encode(a), partition=partition)
            metrics.actions.labels(kind).inc()

    @app.agent(changes, name="segment-changes")
    async def on_changes(stream: faust.StreamT) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            try:
                change = decode_change(event.key, event.value, config.max_event_bytes)
            except InvalidEvent as exc:
                dead_letter(event, exc, "changes")
                continue
            part = event.message.partition
            key = change.user_id.encode()
            spend: dict[str, tuple[int, int | None]] = {}
            for c in campaigns.triggered_by(change.segment, change.change):
                if c.coupon is not None and c.daily_budget is not None:
                    spent = budgets.get(budget_key(c.name, change.at_ms, part).encode())
                    spend[c.name] = (int(spent or 0), budget_share(c.daily_budget, part, n))
            result = handle_change(load_user(users.get(key)), change, rules, spend)
            if result.outcomes and result.outcomes[0][0] == "*":
                metrics.inputs.labels("changes", result.outcomes[0][1]).inc()
                continue
            produce(key, part, result.actions)
            users[key] = dump_state(result.user)
            for name, spent_now in result.spent.items():
                budgets[budget_key(name, change.at_ms, part).encode()] = str(spent_now).encode()
            event.ack()
            for name, outcome in result.outcomes:
                metrics.decisions.labels(name, outcome).inc()
            metrics.inputs.labels("changes", "processed").inc()
            metrics.process_seconds.observe(time.perf_counter() - started)

    @app.agent(churn_in, name="churn-alerts")
    async def on_churn(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                alert = decode_churn_alert(event.key, event.value, config.max_event_bytes)
            except InvalidEvent as exc:
                dead_letter(event, exc, "churn")
                continue
            key = alert.user_id.encode()
            state, actions = handle_churn_alert(load_churn(churn_seen.get(key)), alert, rules)
            if not actions:
                metrics.inputs.labels("churn", "duplicate").inc()
                continue
            produce(key, event.message.partition, actions)
            churn_seen[key] = dump_state(state)
            event.ack()
            metrics.inputs.labels("churn", "processed").inc()

    def unauthorized(view: View) -> Response:
        metrics.http.labels("profile", "401").inc()
        return view.json({"error": "unauthorized: send Authorization: Bearer <token>"},
                         status=401, headers={"WWW-Authenticate": 'Bearer realm="segstream"'})

    @app.page("/users/{user_id}/route")
    class RouteView(View):
        """Where customer service should queue a user's questions."""

        async def get(self, request: Request, user_id: str) -> Response:
            stored = users.get(user_id.encode())
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
            stored = users.get(user_id.encode())
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
