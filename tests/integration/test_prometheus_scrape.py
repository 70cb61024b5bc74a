"""A real Prometheus (Debian's package) scrapes a real worker process on loopback.

Known traffic goes through the broker; the test then asks Prometheus, through its HTTP
API, for the values it scraped, and checks that every alert rule of
``deploy/prometheus/alerts.yml`` evaluates without error against the real series.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from .kafka_helpers import committed_total, env_of, isolated_settings, produce, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DAY = 86_400_000
JOB = "segstream-worker"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is not None:
        return path
    msg = "prometheus not found: apt-get install -y prometheus (.ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


class Prometheus:
    """A Prometheus server on a free loopback port, scraping ``targets`` every second."""

    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copy(ALERTS, workdir / ALERTS.name)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [ALERTS.name],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_until(lambda: self.proc.poll() is not None
                   or http_get(self.url + "/-/ready")[0] == 200, 60, what="prometheus ready")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url)
        assert status == 200, body[:500]
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None when it has no result."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def prometheus_bin() -> str:
    return prometheus_binary()


@pytest.fixture
def running_worker(kafka_bootstrap: str, test_id: str, tmp_path: Path
                   ) -> Iterator[tuple[Any, int, subprocess.Popen[bytes], Path]]:
    s = isolated_settings(kafka_bootstrap, test_id, tmp_path / "state")
    port = free_port()
    log = tmp_path / "worker.log"
    env = {**os.environ, **env_of(s), "SEGSTREAM_METRICS_PORT": str(port),
           "SEGSTREAM_METRICS_HOST": "127.0.0.1", "SEGSTREAM_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield s, port, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _order(user: str, oid: str, ts: int, total: float) -> dict[str, Any]:
    return {"event_id": f"{user}-{oid}", "user_id": user, "ts": ts, "schema_version": 1,
            "order_id": oid, "status": "placed", "total": total, "currency": "EUR",
            "discount": 0.0, "payment_method": "card"}


def test_prometheus_scrapes_the_worker_and_sees_the_traffic(running_worker, prometheus_bin,
                                                            tmp_path):
    s, port, worker, log = running_worker
    t0 = int(time.time() * 1000) - 20 * DAY
    vips = [f"vip{i}" for i in range(4)]
    small = [f"small{i}" for i in range(6)]
    records: list[tuple[str, bytes, bytes]] = []
    for user in vips:  # 3 orders of 400 within a year: vip (spend >= 1000, orders >= 3)
        for k in range(3):
            records.append((s.topics.orders, user.encode(),
                            orjson.dumps(_order(user, f"{user}-o{k}", t0 + k * DAY, 400.0))))
    for user in small:
        records.append((s.topics.orders, user.encode(),
                        orjson.dumps(_order(user, f"{user}-o0", t0, 20.0))))
    bad = [(s.topics.clicks, f"bad{i}".encode(), b"{not json") for i in range(5)]
    produce(s, records + bad)
    total = len(records) + len(bad)
    wait_until(lambda: worker.poll() is not None or committed_total(s) == total, 120,
               what="all input committed")
    assert worker.poll() is None, log.read_text()[-3000:]
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 30,
               what="worker ready")

    prom = Prometheus(prometheus_bin, tmp_path, [f"127.0.0.1:{port}"])
    try:
        expected = {
            f'up{{job="{JOB}"}}': 1.0,
            'sum(segstream_events_consumed_total{type="order"})': float(len(records)),
            'sum(segstream_events_consumed_total{type="invalid"})': float(len(bad)),
            'sum(segstream_dlq_total{reason="malformed_json"})': float(len(bad)),
            'sum(segstream_segment_changes_total{segment="vip", change="entered"})':
                float(len(vips)),
            f'sum(segstream_outputs_total{{topic="{s.topics.dlq}"}})': float(len(bad)),
        }
        got: dict[str, float | None] = {}

        def scraped() -> bool:
            got.update({q: prom.value(q) for q in expected})
            return got == expected

        try:
            wait_until(scraped, 60, interval=1.0, what="scraped values")
        except AssertionError:
            raise AssertionError(f"prometheus has {got}, expected {expected}") from None
        # the latency histograms arrived with observations
        assert (prom.value("sum(segstream_e2e_append_time_seconds_count)") or 0) > 0
        assert prom.value('histogram_quantile(0.99, sum by (le) '
                          '(segstream_e2e_append_time_seconds_bucket))') is not None
        # labels of the scraped series: the job and the worker's own, nothing else
        series = prom.query('segstream_dlq_total')
        assert [sorted(r["metric"]) for r in series] == [
            ["__name__", "instance", "job", "reason"]]

        # every alert rule evaluates against the real series without error
        def rules_evaluated() -> list[dict[str, Any]]:
            body = json.loads(http_get(prom.url + "/api/v1/rules")[1])
            return [r for g in body["data"]["groups"] for r in g["rules"]]

        wait_until(lambda: all(not r.get("lastEvaluation", "0001").startswith("0001")
                               for r in rules_evaluated()), 30, what="rules evaluated")
        rules = rules_evaluated()
        names = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"]
                 for r in g["rules"]}
        assert names <= {r["name"] for r in rules}
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken
        firing = {r["name"] for r in rules if r["state"] == "firing"}
        assert "SegstreamWorkerDown" not in firing and "SegstreamNoWorkers" not in firing
    finally:
        prom.close()
