"""The actions app against the real broker: coupons, caps, budgets, holdout, routing over
HTTP, the profile's bearer token, the DLQ, and exactly one action per change across a
SIGKILL mid-stream and a redelivery of every change: not one action or dead-letter record
twice, as a ``read_committed`` consumer reads the outputs.

The expected actions are computed by running the pure engine over the same records in
(partition, offset) order, so the test checks what the faust glue adds: tables that
survive a crash, no second action for a redelivered change, outputs that match.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.contracts import decode_change, decode_churn_alert
from streams.actions.engine import (
    DAY_MS,
    ChurnState,
    Rules,
    UserState,
    budget_key,
    budget_share,
    handle_change,
    handle_churn_alert,
)
from streams.actions.topics import admin, ensure_topics
from streams.config import Settings
from streams.exceptions import ConfigError
from streams.kafka.dlq import parse_headers

from .kafka_helpers import end_offsets, produce, read_all, wait_until

pytestmark = pytest.mark.integration

T0 = 1_789_084_800_000  # 2026-09-11T00:00:00Z
USERS = 2000
TOKEN = "it-token-5b1f0c2e9d7a4c3b"
CAMPAIGNS = """
version: it-1
frequency_cap: {coupons: 1, per: 7d}
default_route: {queue: standard, priority: 3, tier: standard}
dedupe_window: 30d
campaigns:
  welcome:
    when: {segment: price_sensitive, change: entered}
    coupon: {type: percent, value: 10, validity: 14d}
    daily_budget: 300
    holdout: 0.3
  cart:
    when: {segment: cart_abandoner, change: entered}
    coupon: {type: free_shipping, value: 0, validity: 3d}
    daily_budget: 30
  vip_in:
    when: {segment: vip, change: entered}
    route: {queue: vip, priority: 1, tier: vip}
  vip_out:
    when: {segment: vip, change: exited}
    route: {queue: standard, priority: 3, tier: standard}
  winback:
    when: {segment: churn_risk.high, change: entered}
    coupon: {type: fixed, value: 15, currency: EUR, validity: 7d}
    winback_for: [high]
"""
ROLES = ("changes", "churn", "dlq", "coupons", "holdout", "vip_routing", "alerts",
         "churn_alerts")
OUTPUTS = ("coupons", "holdout", "vip_routing", "alerts", "churn_alerts")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _change(i: int, segment: str, kind: str, at: int, segments: list[str]) -> dict[str, Any]:
    uid = f"u{i:05d}"
    return {"event_id": f"{uid}-{segment}-{kind}-{at}", "schema_version": 1, "user_id": uid,
            "segment": segment, "change": kind,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at / 1000)), "at_ms": at,
            "reasons": [{"feature": "coupon_share_365d", "op": ">=", "value": 0.6,
                         "threshold": 0.5}],
            "segments": segments, "scores": {"churn": round(i / USERS, 3)},
            "policy_version": "p1", "model_version": None}


def _changes() -> list[dict[str, Any]]:
    out = []
    for i in range(USERS):
        at = T0 + (i % 10) * DAY_MS + i * 1000
        vip = ["vip"] if i % 10 == 0 else []
        out.append(_change(i, "price_sensitive", "entered", at, ["price_sensitive", *vip]))
        # within the 7-day cap of the welcome coupon (or its holdout): capped
        out.append(_change(i, "cart_abandoner", "entered", at + 3_600_000,
                           ["cart_abandoner", "price_sensitive", *vip]))
        if i % 10 == 0:
            out.append(_change(i, "vip", "entered", at + 7_200_000,
                               ["cart_abandoner", "price_sensitive", "vip"]))
        if i % 20 == 0:
            out.append(_change(i, "vip", "exited", at + 10_800_000,
                               ["cart_abandoner", "price_sensitive"]))
        # day 20: the cap has reopened for everyone; only the budget limits the cart coupon
        out.append(_change(i, "cart_abandoner", "entered", T0 + 20 * DAY_MS + i * 1000,
                           ["cart_abandoner"]))
    out.sort(key=lambda c: c["at_ms"])
    return out


def _alert(i: int) -> dict[str, Any]:
    return {"event_id": f"alert-{i}", "schema_version": 1, "user_id": f"u{i:05d}",
            "at": "2026-09-20T00:00:00Z", "at_ms": T0 + 9 * DAY_MS, "tier": "high",
            "previous_tier": "medium", "score": 0.83,
            "top_features": [{"feature": "recency_days", "value": 74.0, "contribution": 0.41},
                             {"feature": "orders_90d", "value": 0.0, "contribution": 0.22},
                             {"feature": "sessions_7d", "value": 1.0, "contribution": 0.1},
                             {"feature": "rating_avg", "value": 4.0, "contribution": -0.02}]}


def _expected(book: CampaignBook, records: list[tuple[int, int, bytes, bytes]],
              churn: list[tuple[int, int, bytes, bytes]], partitions: int) -> set[tuple[str, str]]:
    """(kind, action_id) the pure engine yields over the records in partition order."""
    rules = Rules(book=book, holdout_seed="it-seed")
    users: dict[str, UserState] = defaultdict(UserState)
    spent: dict[str, int] = defaultdict(int)
    out: set[tuple[str, str]] = set()
    for part, _off, key, value in sorted(records):
        ch = decode_change(key, value, 65536)
        budgets = {}
        for c in book.triggered_by(ch.segment, ch.change):
            if c.coupon and c.daily_budget:
                budgets[c.name] = (spent[budget_key(c.name, ch.at_ms, part)],
                                   budget_share(c.daily_budget, part, partitions))
        result = handle_change(users[ch.user_id], ch, rules, budgets)
        for name, n in result.spent.items():
            spent[budget_key(name, ch.at_ms, part)] = n
        out |= {(type(a).__name__, a.action_id) for a in result.actions}
    churn_state: dict[str, ChurnState] = defaultdict(ChurnState)
    for _part, _off, key, value in sorted(churn):
        alert = decode_churn_alert(key, value, 65536)
        _, actions = handle_churn_alert(churn_state[alert.user_id], alert, rules)
        out |= {(type(a).__name__, a.action_id) for a in actions}
    return out


_KIND = {"coupons": "CouponAction", "holdout": "HoldoutAction", "vip_routing": "RouteAction",
         "alerts": "AlertAction", "churn_alerts": "ChurnAlertAction"}


class Progress:
    """Committed offsets of the app's group against the ends of its input topics."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        self._c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                            "enable.auto.commit": False,
                            # read_committed probes get UNSTABLE_OFFSET_COMMIT while a
                            # transaction holds offsets
                            "isolation.level": "read_uncommitted"})
        self._tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]

    def committed(self) -> int:
        try:
            return sum(max(tp.offset, 0) for tp in self._c.committed(self._tps, timeout=10))
        except KafkaException:  # the coordinator may still be loading: "not yet"
            return -1

    def close(self) -> None:
        self._c.close()


def _uncommitted_count(bootstrap: str, topic: str, timeout: float = 30.0) -> int:
    """Data records in ``topic`` as a ``read_uncommitted`` consumer sees them: those of
    aborted transactions included (the difference to ``read_all`` shows what the SIGKILL
    cut off)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"uncommitted-{time.time_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_uncommitted",
                  "enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    todo, n = {p for p, end in ends.items() if end > 0}, 0
    deadline = time.monotonic() + timeout
    while todo and time.monotonic() < deadline:
        for m in c.consume(1000, 0.2):
            if m.error() is None:
                n += 1
            elif c.position([TopicPartition(topic, m.partition())])[0].offset \
                    >= ends[m.partition()]:
                todo.discard(m.partition())
    c.close()
    assert not todo, f"{topic}: partitions {sorted(todo)} not read to their end"
    return n


def _get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def test_exactly_one_action_per_change_across_a_crash_and_a_redelivery(
        kafka_bootstrap, test_id, tmp_path: Path):
    campaigns = tmp_path / "campaigns.yaml"
    campaigns.write_text(CAMPAIGNS)
    port = _free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SEGSTREAM_ACTIONS_APP_ID": f"{test_id}-actions",
        "SEGSTREAM_ACTIONS_PARTITIONS": "3",
        "SEGSTREAM_ACTIONS_WEB_PORT": str(port),
        "SEGSTREAM_ACTIONS_STATE_DIR": str(tmp_path / "state"),
        "SEGSTREAM_ACTIONS_API_TOKEN": TOKEN,
        "SEGSTREAM_ACTIONS_HOLDOUT_SEED": "it-seed",
        "SEGSTREAM_CAMPAIGNS_FILE": str(campaigns),
        "SEGSTREAM_LOG_LEVEL": "INFO",
        **{f"SEGSTREAM_TOPIC_{r.upper()}": f"{test_id}.{r}" for r in ROLES},
    }
    config = ActionsConfig.from_env(env)
    ensure_topics(config, admin(config))
    book = CampaignBook.load(campaigns)
    t = config.topics
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    log = tmp_path / "actions.log"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "streams.actions"],
                                env={**os.environ, **env}, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT)

    changes = [(c["user_id"].encode(), orjson.dumps(c)) for c in _changes()]
    alerts = [(f"u{i:05d}".encode(), orjson.dumps(_alert(i))) for i in range(0, USERS, 100)]
    invalid = [(b"u00001", b"{broken"), (b"u00002", orjson.dumps({"event_id": "x"})),
               (b"someone-else", changes[0][1])]
    cut = len(changes) * 2 // 3
    sent = [(t.changes, k, v) for k, v in changes[:cut] + invalid]
    where = produce(settings, sent)
    progress = Progress(kafka_bootstrap, config.app_id, [t.changes, t.churn], 3)

    proc = start()
    try:
        # SIGKILL while the app is busy: actions out, offsets not (all) committed yet
        wait_until(lambda: sum(end_offsets(settings, t.coupons).values()) >= 300, 120,
                   interval=0.05, what="the first coupons")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = progress.committed()
        assert killed_at < cut + len(invalid), "the app finished before it was killed"
        print(f"SIGKILL with {killed_at} of {cut + len(invalid)} inputs committed")

        # the rest of the stream, every change again (at-least-once upstream), alerts twice
        more = ([(t.changes, k, v) for k, v in changes[cut:] + changes]
                + [(t.churn, k, v) for k, v in alerts + alerts])
        where += produce(settings, more)
        sent += more
        proc = start()
        total = sum(end_offsets(settings, t.changes).values()) + sum(
            end_offsets(settings, t.churn).values())
        wait_until(lambda: progress.committed() == total, 240, interval=0.5,
                   what="all changes and alerts committed")

        # routing over HTTP
        base = f"http://127.0.0.1:{port}"
        status, vip = _get(f"{base}/users/u00010/route")
        assert status == 200 and (vip["queue"], vip["priority"], vip["tier"]) == ("vip", 1,
                                                                                 "vip")
        assert "entered vip" in vip["why"] and vip["campaign"] == "vip_in"
        _, lapsed = _get(f"{base}/users/u00020/route")
        assert lapsed["queue"] == "standard" and lapsed["campaign"] == "vip_out"
        _, unknown = _get(f"{base}/users/nobody/route")
        assert unknown["default"] is True and unknown["queue"] == "standard"

        # the profile needs the bearer token
        assert _get(f"{base}/users/u00010")[0] == 401
        assert _get(f"{base}/users/u00010", token="wrong-token-0000000000")[0] == 401
        status, profile = _get(f"{base}/users/u00010", token=TOKEN)
        assert status == 200 and profile["segments"] == ["cart_abandoner"]
        assert profile["scores"] == {"churn": 0.005}
        assert set(profile["reasons"]) == {"cart_abandoner"}
        assert _get(f"{base}/users/nobody", token=TOKEN)[0] == 404
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert 'segstream_actions_inputs_total{outcome="duplicate",role="changes"}' in metrics
        assert 'segstream_actions_http_requests_total{endpoint="profile",status="401"} 2.0' \
            in metrics

        # a clean restart, then every change and alert a third time: not one more record
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        before = {r: end_offsets(settings, getattr(t, r)) for r in (*OUTPUTS, "dlq")}
        where_again = produce(settings, [(t.changes, k, v) for k, v in changes]
                              + [(t.churn, k, v) for k, v in alerts])
        assert len(where_again) == len(changes) + len(alerts)
        proc = start()
        total += len(where_again)
        wait_until(lambda: progress.committed() == total, 240, interval=0.5,
                   what="the third delivery committed")
        assert {r: end_offsets(settings, getattr(t, r)) for r in (*OUTPUTS, "dlq")} == before
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        progress.close()
    assert TOKEN not in log.read_text(errors="replace")

    # read_committed (read_all): records of the transaction the SIGKILL cut off are not read
    got: dict[str, list[Any]] = {r: read_all(settings, getattr(t, r)) for r in OUTPUTS}
    records: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    copies: Counter[tuple[str, str]] = Counter()
    for r in OUTPUTS:
        for m in got[r]:
            aid = (_KIND[r], orjson.loads(m.value())["action_id"])
            records[aid].add(m.value())
            copies[aid] += 1
    ids = list(records)
    # Actions, state and offsets are written in one transaction per batch
    # (streams/actions/loop.py): the SIGKILL must not repeat a single record.
    assert all(len(v) == 1 for v in records.values()), "one change, two different actions"
    repeated = sum(n - 1 for n in copies.values())
    aborted = sum(_uncommitted_count(kafka_bootstrap, getattr(t, r)) for r in OUTPUTS) - sum(
        len(v) for v in got.values())
    print(f"actions: {len(ids)} distinct, {repeated} repeated record(s) after the SIGKILL; "
          f"{aborted} record(s) of aborted transactions not read")
    assert repeated == 0, [aid for aid, n in copies.items() if n > 1][:10]

    positions = list(zip(where, sent, strict=True))
    change_recs = [(p, o, k, v) for (topic, p, o), (_t, k, v) in positions
                   if topic == t.changes and (k, v) not in invalid]
    churn_recs = [(p, o, k, v) for (topic, p, o), (_t, k, v) in positions if topic == t.churn]
    assert set(ids) == _expected(book, change_recs, churn_recs, 3)

    distinct = {aid: orjson.loads(next(iter(v))) for aid, v in records.items()}
    coupons = [a for (kind, _), a in distinct.items() if kind == "CouponAction"]
    held = [a for (kind, _), a in distinct.items() if kind == "HoldoutAction"]
    # frequency cap: one coupon (or holdout slot) per user per 7 days, across campaigns
    per_user: dict[str, list[int]] = defaultdict(list)
    for a in coupons:
        per_user[a["user_id"]].append(a["issued_at_ms"])
    for a in held:
        per_user[a["user_id"]].append(a["at_ms"])
    for times in per_user.values():
        times.sort()
        assert all(b - a >= 7 * DAY_MS for a, b in pairwise(times))
    # the first cart change of every user fell inside the cap
    assert not [a for a in coupons if a["campaign"] == "cart" and a["issued_at_ms"]
                < T0 + 20 * DAY_MS]
    # budget: day 20 had 2000 eligible users and 30 cart coupons to give
    assert Counter(a["campaign"] for a in coupons if a["issued_at_ms"] // DAY_MS
                   == (T0 + 20 * DAY_MS) // DAY_MS)["cart"] == 30
    # holdout share of the welcome campaign (0.3) within tolerance
    welcome_held = sum(a["campaign"] == "welcome" for a in held)
    welcome_sent = sum(a["campaign"] == "welcome" for a in coupons)
    assert welcome_held + welcome_sent == USERS
    assert abs(welcome_held / USERS - 0.3) < 0.04
    # churn alerts: one per alert despite the redelivery, with the win-back offer
    churn = [a for (kind, _), a in distinct.items() if kind == "ChurnAlertAction"]
    assert len(churn) == len(alerts)
    assert all(a["suggested_campaign"] == "winback" and len(a["top_reasons"]) == 3
               for a in churn)
    # invalid input went to the DLQ with its original bytes and where it came from, once
    # (dead letters are in the same transactions as the actions)
    dead = read_all(settings, t.dlq)
    print(f"dead letters: {len(dead)} record(s) for {len(invalid)} invalid inputs")
    assert len(dead) == len(invalid)
    assert {m.value() for m in dead} == {v for _k, v in invalid}
    positions = {(h["dlq.source.partition"], h["dlq.source.offset"])
                 for h in (parse_headers(m.headers()) for m in dead)}
    assert len(positions) == len(invalid)
    reasons = {parse_headers(m.headers())["dlq.reason"] for m in dead}
    assert reasons == {"malformed_json", "missing_field", "key_mismatch"}
    assert all(parse_headers(m.headers())["dlq.source.topic"] == t.changes for m in dead)


def test_topics_with_the_wrong_partition_count_stop_the_start_with_the_fix(
        kafka_bootstrap, test_id):
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SEGSTREAM_ACTIONS_API_TOKEN": TOKEN,
           **{f"SEGSTREAM_TOPIC_{r.upper()}": f"{test_id}.{r}" for r in ROLES}}
    ensure_topics(ActionsConfig.from_env({**env, "SEGSTREAM_ACTIONS_PARTITIONS": "2"}),
                  admin(ActionsConfig.from_env(env)))
    four = ActionsConfig.from_env({**env, "SEGSTREAM_ACTIONS_PARTITIONS": "4"})
    with pytest.raises(ConfigError, match="SEGSTREAM_ACTIONS_PARTITIONS=4"):
        ensure_topics(four, admin(four))
    result = subprocess.run([sys.executable, "-m", "streams.actions", "run"],
                            env={**os.environ, **env, "SEGSTREAM_ACTIONS_PARTITIONS": "4"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "has 2 partitions" in result.stderr
