"""The process's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

A stdlib :class:`~http.server.ThreadingHTTPServer` in a daemon thread: the endpoints are
tiny, scraped every few seconds, and must keep answering while the consume loop is busy
or blocked in a rebalance, so the server never takes a lock the loop holds for long.

Examples
--------
>>> import urllib.request
>>> from prometheus_client import CollectorRegistry
>>> from streams.http.health import Health
>>> from streams.http.sampler import StatusSampler
>>> reg = CollectorRegistry()
>>> srv = serve(reg, Health(), StatusSampler(reg), "127.0.0.1", 0)
>>> urllib.request.urlopen(srv.url + "/healthz").status
200
>>> srv.close()
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from streams.http.exceptions import HttpServeError
from streams.http.health import Health, Verdict
from streams.http.page import STATUS_HTML
from streams.http.sampler import StatusSampler

log = logging.getLogger(__name__)

_PAGE = STATUS_HTML.encode()
_INDEX = b"segstream: /metrics /healthz /readyz /status /status.json\n"


class StatusServer:
    """A running endpoint; :meth:`close` stops the server and the sampler it started.

    Attributes
    ----------
    host, port
        Where it listens (``port`` is the bound one when 0 was asked for).
    """

    def __init__(self, httpd: ThreadingHTTPServer, sampler: StatusSampler | None) -> None:
        self._httpd = httpd
        self._sampler = sampler
        address = httpd.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, name="http-status",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9464``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving, release the port and stop the sampler (idempotent)."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(registry: CollectorRegistry, health: Health,
             sampler: StatusSampler | None) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to this process's registry, health and sampler."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "segstream"
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one write (flushed after each request) without
        # Nagle's delay: otherwise a keep-alive scrape waits ~40 ms on delayed ACKs.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._route(send_body=True)

        def do_HEAD(self) -> None:
            self._route(send_body=False)

        def _route(self, send_body: bool) -> None:
            path = urlsplit(self.path).path.rstrip("/") or "/"
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(HTTPStatus.OK, content_type, encoder(registry), send_body)
            elif path == "/healthz":
                self._probe(health.liveness(), send_body)
            elif path == "/readyz":
                self._probe(health.readiness(), send_body)
            elif path == "/status":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", _PAGE, send_body)
            elif path == "/status.json":
                body: dict[str, Any] = (sampler.snapshot() if sampler is not None
                                        else {"points": [], "segments": [], "models": []})
                verdict = health.readiness()
                body["health"] = {"ready": verdict.ready, "reasons": verdict.reasons}
                self._send(HTTPStatus.OK, "application/json", orjson.dumps(body), send_body)
            elif path == "/":
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", _INDEX, send_body)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                           b"not found\n", send_body)

        def _probe(self, verdict: Verdict, send_body: bool) -> None:
            status = HTTPStatus.OK if verdict.ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, "application/json", orjson.dumps(verdict.as_json()), send_body)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes,
                  send_body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes and scrapes arrive every few seconds: debug level, not stderr noise.
            log.debug("http " + format, *args)

    return Handler


def serve(registry: CollectorRegistry, health: Health, sampler: StatusSampler | None,
          host: str, port: int) -> StatusServer:
    """Serve the endpoints on ``host:port`` (0: any free port) in a daemon thread.

    The sampler, when given, is started here and stopped by :meth:`StatusServer.close`.

    Raises
    ------
    HttpServeError
        The address cannot be bound (port in use, unknown host); the message names it.
    """
    try:
        httpd = ThreadingHTTPServer((host, port), _handler(registry, health, sampler))
    except OSError as exc:
        raise HttpServeError(
            f"cannot serve metrics and probes on {host}:{port}: {exc.strerror or exc}; "
            "set SEGSTREAM_METRICS_PORT to a free port (or SEGSTREAM_METRICS_HOST to a "
            "local address)") from None
    httpd.daemon_threads = True
    if sampler is not None:
        sampler.start()
    server = StatusServer(httpd, sampler)
    log.info("http endpoint listening", extra={"ctx": {"url": server.url}})
    return server
