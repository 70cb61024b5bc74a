"""The live status page: one self-contained HTML document, no CDN, no build step.

It polls ``status.json`` (relative, so it works behind a port-forward or a path prefix)
and draws inline SVG charts: throughput, end-to-end latency, consumer lag, segment sizes
over time, flows in and out of each segment, and model quality. The same page works
from ``kubectl port-forward`` at 3 a.m. with nothing else running.

>>> "<svg" in STATUS_HTML or "createElementNS" in STATUS_HTML
True
>>> svg_ns = "http://www.w3.org/2000/svg"
>>> "://" in STATUS_HTML.replace(svg_ns, "")
False
"""

from __future__ import annotations

STATUS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>segstream status</title>
<style>
  :root { --bg:#0f1419; --panel:#182029; --fg:#e6e6e6; --muted:#8b98a5; --ok:#3fb950;
          --bad:#f85149; --grid:#2a3541; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { display:flex; gap:16px; align-items:center; padding:12px 20px;
           border-bottom:1px solid var(--grid); }
  header h1 { font-size:18px; margin:0; font-weight:600; }
  .badge { padding:3px 10px; border-radius:12px; font-weight:600; font-size:13px; }
  .badge.ok { background:#12361d; color:var(--ok); }
  .badge.bad { background:#3d1416; color:var(--bad); }
  .muted { color:var(--muted); }
  .kpis { display:grid; grid-template-columns:repeat(5, 1fr); gap:12px; padding:12px 20px; }
  .kpi { background:var(--panel); border-radius:8px; padding:10px 14px; }
  .kpi .v { font-size:24px; font-weight:600; }
  .grid { display:grid; grid-template-columns:1fr 1fr; gap:12px; padding:0 20px 20px; }
  .panel { background:var(--panel); border-radius:8px; padding:10px 14px; min-height:250px; }
  .panel h2 { font-size:14px; margin:0 0 6px; font-weight:600; }
  .legend { display:flex; flex-wrap:wrap; gap:10px; font-size:12px; margin-top:4px; }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px;
              margin-right:4px; vertical-align:-1px; }
  svg text { fill:var(--muted); font-size:11px; }
  .empty { color:var(--muted); padding:40px 0; text-align:center; }
</style>
</head>
<body>
<header>
  <h1>segstream</h1>
  <span id="ready" class="badge">&hellip;</span>
  <span id="reasons" class="muted"></span>
  <span id="updated" class="muted" style="margin-left:auto"></span>
</header>
<section class="kpis">
  <div class="kpi"><div class="muted">events/s</div><div class="v" id="k-events">-</div></div>
  <div class="kpi"><div class="muted">dead letters/s</div><div class="v" id="k-dlq">-</div></div>
  <div class="kpi"><div class="muted">p99 append&rarr;emit</div>
    <div class="v" id="k-p99">-</div></div>
  <div class="kpi"><div class="muted">consumer lag</div><div class="v" id="k-lag">-</div></div>
  <div class="kpi"><div class="muted">segment changes/s</div>
    <div class="v" id="k-changes">-</div></div>
</section>
<section class="grid">
  <div class="panel"><h2>Throughput (events/s, dead letters/s)</h2><div id="c-flow"></div></div>
  <div class="panel"><h2>End-to-end latency (s)</h2><div id="c-latency"></div></div>
  <div class="panel"><h2>Segment sizes over time</h2><div id="c-sizes"></div></div>
  <div class="panel"><h2>Flows per segment (entered &uarr; / exited &darr; per interval)</h2>
    <div id="c-flows"></div></div>
  <div class="panel"><h2>Consumer lag (messages)</h2><div id="c-lag"></div></div>
  <div class="panel"><h2>Model quality (AUC, log loss)</h2><div id="c-models"></div></div>
</section>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf",
                "#ff7b72", "#a5d6ff", "#7ee787", "#e3b341"];
const W = 560, H = 200, PAD = {l: 48, r: 8, t: 8, b: 22};

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "-";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  if (a >= 10 || v === 0) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}
function legend(box, names) {
  const d = document.createElement("div");
  d.className = "legend";
  names.forEach((n, i) => {
    const s = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = COLORS[i % COLORS.length];
    s.appendChild(sw);
    s.appendChild(document.createTextNode(n));
    d.appendChild(s);
  });
  box.appendChild(d);
}
// series: [{name, values:[number|null]}], times: [seconds]
function lineChart(id, times, series, opts) {
  const box = document.getElementById(id);
  box.textContent = "";
  const vals = series.flatMap(s => s.values).filter(v => v !== null && v !== undefined);
  if (times.length < 2 || vals.length === 0) {
    const e = document.createElement("div");
    e.className = "empty";
    e.textContent = "no data yet";
    box.appendChild(e);
    return;
  }
  let lo = opts && opts.min !== undefined ? opts.min : Math.min(0, ...vals);
  let hi = Math.max(...vals);
  if (hi <= lo) hi = lo + 1;
  const t0 = times[0], t1 = times[times.length - 1] > t0 ? times[times.length - 1] : t0 + 1;
  const x = t => PAD.l + (W - PAD.l - PAD.r) * (t - t0) / (t1 - t0);
  const y = v => H - PAD.b - (H - PAD.t - PAD.b) * (v - lo) / (hi - lo);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"}, box);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    el("line", {x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), stroke: "#2a3541"}, svg);
    el("text", {x: PAD.l - 4, y: y(v) + 4, "text-anchor": "end"}, svg).textContent = fmt(v);
  }
  const span = t1 - t0;
  el("text", {x: PAD.l, y: H - 6}, svg).textContent = "-" + Math.round(span) + "s";
  el("text", {x: W - PAD.r, y: H - 6, "text-anchor": "end"}, svg).textContent = "now";
  series.forEach((s, i) => {
    let d = "", pen = false;
    s.values.forEach((v, j) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(times[j]).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    if (d) el("path", {d, fill: "none", stroke: COLORS[i % COLORS.length],
                       "stroke-width": 2, "data-series": s.name}, svg);
  });
  legend(box, series.map(s => s.name));
}
// Entered (up) and exited (down) per segment: the last interval and the whole window.
function flowChart(id, names, last, total) {
  const box = document.getElementById(id);
  box.textContent = "";
  if (names.length === 0) {
    const e = document.createElement("div");
    e.className = "empty";
    e.textContent = "no segment changes yet";
    box.appendChild(e);
    return;
  }
  const peak = Math.max(1, ...names.flatMap(n => [total[n].entered, total[n].exited]));
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img"}, box);
  const mid = (H - PAD.b) / 2 + 4, half = mid - PAD.t - 10;
  el("line", {x1: PAD.l, x2: W - PAD.r, y1: mid, y2: mid, stroke: "#8b98a5"}, svg);
  const slot = (W - PAD.l - PAD.r) / names.length, bw = Math.min(36, slot * 0.5);
  names.forEach((n, i) => {
    const cx = PAD.l + slot * (i + 0.5);
    const up = half * total[n].entered / peak, down = half * total[n].exited / peak;
    el("rect", {x: cx - bw / 2, y: mid - up, width: bw, height: up, fill: "#3fb950",
                "data-segment": n, "data-flow": "entered"}, svg);
    el("rect", {x: cx - bw / 2, y: mid, width: bw, height: down, fill: "#f85149",
                "data-segment": n, "data-flow": "exited"}, svg);
    el("text", {x: cx, y: mid - up - 3, "text-anchor": "middle"}, svg).textContent =
      "+" + fmt(total[n].entered) + " (" + fmt(last[n] ? last[n].entered : 0) + ")";
    el("text", {x: cx, y: mid + down + 12, "text-anchor": "middle"}, svg).textContent =
      "-" + fmt(total[n].exited) + " (" + fmt(last[n] ? last[n].exited : 0) + ")";
    el("text", {x: cx, y: H - 4, "text-anchor": "middle"}, svg).textContent = n;
  });
  const note = document.createElement("div");
  note.className = "muted";
  note.style.fontSize = "12px";
  note.textContent = "bars: whole window; in brackets: last interval";
  box.appendChild(note);
}
function render(data) {
  const pts = data.points;
  const times = pts.map(p => p.t);
  const last = pts.length ? pts[pts.length - 1] : null;
  const h = data.health || {};
  const badge = document.getElementById("ready");
  badge.textContent = h.ready ? "ready" : "not ready";
  badge.className = "badge " + (h.ready ? "ok" : "bad");
  document.getElementById("reasons").textContent = (h.reasons || []).join("; ");
  document.getElementById("updated").textContent = last ?
    "sampled " + new Date(last.t * 1000).toISOString().replace("T", " ").slice(0, 19) +
    " UTC, every " + data.interval_s + "s" : "";
  if (last) {
    document.getElementById("k-events").textContent = fmt(last.events_per_s);
    document.getElementById("k-dlq").textContent = fmt(last.dlq_per_s);
    document.getElementById("k-p99").textContent =
      last.latency.append.p99 === null ? "-" : fmt(last.latency.append.p99) + "s";
    document.getElementById("k-lag").textContent = fmt(last.lag);
    document.getElementById("k-changes").textContent = fmt(last.changes_per_s);
  }
  lineChart("c-flow", times, [
    {name: "events/s", values: pts.map(p => p.events_per_s)},
    {name: "dead letters/s", values: pts.map(p => p.dlq_per_s)},
    {name: "segment changes/s", values: pts.map(p => p.changes_per_s)}]);
  lineChart("c-latency", times, [
    {name: "append p50", values: pts.map(p => p.latency.append.p50)},
    {name: "append p99", values: pts.map(p => p.latency.append.p99)},
    {name: "event-time p50", values: pts.map(p => p.latency.event.p50)},
    {name: "event-time p99", values: pts.map(p => p.latency.event.p99)}]);
  lineChart("c-sizes", times, data.segments.map(s => ({
    name: s, values: pts.map(p => p.segments[s] === undefined ? null : p.segments[s])})));
  const total = {};
  data.segments.forEach(s => { total[s] = {entered: 0, exited: 0}; });
  pts.forEach(p => { for (const s in p.flows) {
    total[s].entered += p.flows[s].entered; total[s].exited += p.flows[s].exited; } });
  flowChart("c-flows", data.segments, last ? last.flows : {}, total);
  lineChart("c-lag", times, [{name: "lag", values: pts.map(p => p.lag)}]);
  const ms = [];
  data.models.forEach(m => {
    ms.push({name: m + " AUC", values: pts.map(p => p.models[m] ? p.models[m].auc : null)});
    ms.push({name: m + " log loss",
             values: pts.map(p => p.models[m] ? p.models[m].logloss : null)});
  });
  lineChart("c-models", times, ms, {min: 0});
}
async function refresh() {
  try {
    const r = await fetch("status.json", {cache: "no-store"});
    const data = await r.json();
    render(data);
    setTimeout(refresh, Math.max(1000, data.interval_s * 1000));
  } catch (e) {
    const b = document.getElementById("ready");
    b.textContent = "unreachable";
    b.className = "badge bad";
    setTimeout(refresh, 5000);
  }
}
refresh();
</script>
</body>
</html>
"""
