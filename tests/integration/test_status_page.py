"""The live status page in a real browser: headless Chromium (Debian's package) loads
``/status`` from a running server fed with known metrics, runs its script, and the
rendered DOM and screenshot show every chart with the data that was fed.

The screenshot is also saved as ``docs/img/status-page.png`` for the runbook.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.http.health import Health
from streams.http.sampler import StatusSampler
from streams.http.server import serve

ROOT = Path(__file__).resolve().parents[2]
DOC_COPY = ROOT / "docs" / "img" / "status-page.png"
WIDTH, HEIGHT = 1280, 1100
SEGMENTS = ("vip", "dormant", "new_customer", "price_sensitive")
# Series colours of the page (first three), as RGB.
SERIES_RGB = [(0x58, 0xA6, 0xFF), (0x3F, 0xB9, 0x50), (0xD2, 0x99, 0x22)]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    msg = "chromium not found: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run_chromium(binary: str, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", f"--window-size={WIDTH},{HEIGHT}",
         "--virtual-time-budget=8000", *args, url],
        capture_output=True, timeout=120, check=False)


# --------------------------------------------------------------------------- PNG
def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit non-interlaced PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i] for i in range(len(r)) if i % bpp < 3) for r in rows]


# ------------------------------------------------------------------- known metrics
def feed(registry: CollectorRegistry, sampler: StatusSampler, points: int) -> None:
    """Deterministic traffic: growing segments, steady flows, known latency and AUC."""
    events = Counter("segstream_events_consumed_total", "e", ["topic", "type"],
                     registry=registry)
    dlq = Counter("segstream_dlq_total", "d", ["reason"], registry=registry)
    changes = Counter("segstream_segment_changes_total", "c", ["segment", "change"],
                      registry=registry)
    members = Gauge("segstream_segment_members", "m", ["segment"], registry=registry)
    lag = Gauge("segstream_consumer_lag", "l", ["topic", "partition"], registry=registry)
    append = Histogram("segstream_e2e_append_time_seconds", "a", registry=registry,
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    event = Histogram("segstream_e2e_event_time_seconds", "a", registry=registry,
                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    auc = Gauge("segstream_model_auc", "auc", ["model", "window"], registry=registry)
    logloss = Gauge("segstream_model_logloss", "ll", ["model", "window"], registry=registry)
    rng = random.Random(5)
    sizes = dict.fromkeys(SEGMENTS, 0)
    for i in range(points):
        events.labels("shop.clicks", "click").inc(9000 + rng.randint(0, 3000))
        events.labels("shop.orders", "order").inc(1500 + rng.randint(0, 500))
        dlq.labels("malformed_json").inc(rng.randint(0, 40))
        for k, seg in enumerate(SEGMENTS):
            entered, exited = rng.randint(10, 40 + 10 * k), rng.randint(0, 15)
            changes.labels(seg, "entered").inc(entered)
            changes.labels(seg, "exited").inc(exited)
            sizes[seg] += entered - exited
            members.labels(seg).set(sizes[seg])
        for _ in range(40):
            append.observe(rng.uniform(0.01, 0.08))
            event.observe(rng.uniform(0.2, 2.0))
        lag.labels("shop.clicks", "0").set(200 + 100 * (i % 7))
        auc.labels("churn", "rolling").set(0.78 + 0.04 * ((i % 10) / 10))
        logloss.labels("churn", "rolling").set(0.45 - 0.002 * i)
        sampler.sample()


def test_status_page_renders_every_chart_in_chromium(tmp_path):
    binary = chromium()
    registry = CollectorRegistry()
    now = [1_790_000_000.0]

    def clock() -> float:
        now[0] += 5.0
        return now[0]

    sampler = StatusSampler(registry, interval_s=3600, points=120, clock=clock)
    health = Health()
    health.assigned([0, 1])
    health.restored(0)
    health.restored(1)
    health.broker_ok()
    with serve(registry, health, sampler, "127.0.0.1", 0) as srv:
        feed(registry, sampler, 60)
        url = srv.url + "/status"
        dom = run_chromium(binary, url, "--dump-dom")
        assert dom.returncode == 0, dom.stderr.decode()[-2000:]
        html = dom.stdout.decode()
        shot = tmp_path / "status.png"
        r = run_chromium(binary, url, f"--screenshot={shot}")
        assert r.returncode == 0, r.stderr.decode()[-2000:]

    # the script ran and drew the fed data
    assert 'class="badge ok">ready<' in html
    for seg in SEGMENTS:
        assert f'data-series="{seg}"' in html, f"no size line for {seg}"
        assert f'data-segment="{seg}" data-flow="entered"' in html
        assert f'data-segment="{seg}" data-flow="exited"' in html
    for series in ("events/s", "dead letters/s", "append p99", "event-time p99", "lag",
                   "churn AUC", "churn log loss"):
        assert f'data-series="{series}"' in html, f"no line for {series}"
    assert 'class="empty"' not in html, "a chart had no data"

    data = shot.read_bytes()
    width, height, rows = decode_png(data)
    assert (width, height) == (WIDTH, HEIGHT)
    pixels: dict[tuple[int, int, int], int] = {}
    for row in rows[::4]:
        for x in range(0, len(row), 12):
            px = (row[x], row[x + 1], row[x + 2])
            pixels[px] = pixels.get(px, 0) + 1
    background = max(pixels.values()) / sum(pixels.values())
    assert background < 0.9, "the page is (nearly) blank"
    assert len(pixels) > 50
    for rgb in SERIES_RGB:
        near = sum(n for px, n in pixels.items()
                   if all(abs(p - q) <= 12 for p, q in zip(px, rgb, strict=True)))
        assert near > 20, f"series colour {rgb} missing: a chart did not draw"

    DOC_COPY.parent.mkdir(parents=True, exist_ok=True)
    DOC_COPY.write_bytes(data)
