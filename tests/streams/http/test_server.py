"""The HTTP endpoint: metrics exposition, probes with reasons, the status page."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.http.exceptions import HttpServeError
from streams.http.health import Health
from streams.http.sampler import StatusSampler
from streams.http.server import serve
from streams.metrics import WorkerMetrics


def get(url, accept=None, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def running():
    reg = CollectorRegistry()
    metrics = WorkerMetrics(reg)
    health = Health(broker_timeout_s=30)
    sampler = StatusSampler(reg, interval_s=3600)
    srv = serve(reg, health, sampler, "127.0.0.1", 0)
    yield srv, metrics, health, sampler
    srv.close()


def test_metrics_expose_the_registry_passed_in(running):
    srv, m, _, _ = running
    m.events.labels("shop.orders", "order").inc(7)
    status, ctype, body = get(srv.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    sample = families["segstream_events_consumed"].samples[0]
    assert sample.labels == {"topic": "shop.orders", "type": "order"} and sample.value == 7
    assert "python_gc_objects_collected" not in families  # only what was passed in


def test_metrics_speak_openmetrics_when_asked(running):
    srv, _, _, _ = running
    status, ctype, body = get(srv.url + "/metrics", accept="application/openmetrics-text")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_readyz_says_why_until_ready(running):
    srv, _, health, _ = running
    status, ctype, body = get(srv.url + "/readyz")
    assert (status, ctype) == (503, "application/json")
    assert json.loads(body)["reasons"] == ["waiting for partition assignment",
                                           "broker not reached yet"]
    health.assigned([1, 2])
    health.broker_ok()
    health.restored(1)
    assert json.loads(get(srv.url + "/readyz")[2])["reasons"] == ["restoring partitions [2]"]
    health.restored(2)
    status, _, body = get(srv.url + "/readyz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "reasons": [], "assigned": [1, 2],
                                "restored": [1, 2],
                                "broker_seen_s_ago": json.loads(body)["broker_seen_s_ago"]}


def test_healthz_is_alive_while_not_ready(running):
    srv, *_ = running
    status, _, body = get(srv.url + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_healthz_fails_on_a_stalled_loop():
    reg = CollectorRegistry()
    now = [0.0]
    health = Health(stall_timeout_s=5, clock=lambda: now[0])
    with serve(reg, health, None, "127.0.0.1", 0) as srv:
        now[0] = 6.0
        status, _, body = get(srv.url + "/healthz")
        assert status == 503
        assert json.loads(body)["reasons"] == ["consume loop stalled for 6s (limit 5s)"]


def test_status_page_and_json(running):
    srv, m, _health, sampler = running
    status, ctype, page = get(srv.url + "/status")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assert b'fetch("status.json"' in page
    m.changes.labels("vip", "entered").inc(4)
    sampler.sample()
    status, ctype, body = get(srv.url + "/status.json")
    data = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert data["segments"] == ["vip"]
    assert data["points"][-1]["segments"] == {"vip": 4.0}
    assert data["health"] == {"ready": False, "reasons": ["waiting for partition assignment",
                                                          "broker not reached yet"]}


def test_head_unknown_paths_and_trailing_slash(running):
    srv, *_ = running
    status, _, body = get(srv.url + "/metrics", method="HEAD")
    assert status == 200 and body == b""
    assert get(srv.url + "/nope")[0] == 404
    assert get(srv.url + "/healthz/")[0] == 200
    assert get(srv.url + "/readyz?verbose=1")[0] == 503


def test_port_in_use_is_a_clear_error_and_close_releases_the_port():
    reg = CollectorRegistry()
    first = serve(reg, Health(), None, "127.0.0.1", 0)
    with pytest.raises(HttpServeError, match=f"127.0.0.1:{first.port}.*SEGSTREAM_METRICS_PORT"):
        serve(reg, Health(), None, "127.0.0.1", first.port)
    port = first.port
    first.close()
    first.close()  # idempotent
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_close_stops_the_sampler_it_started():
    reg = CollectorRegistry()
    sampler = StatusSampler(reg, interval_s=3600)
    srv = serve(reg, Health(), sampler, "127.0.0.1", 0)
    assert len(sampler.snapshot()["points"]) <= 1
    srv.close()
    assert sampler._thread is None
