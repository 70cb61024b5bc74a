"""The Grafana dashboard: well-formed, covering every area operators need, and every
query valid PromQL (checked by the real promtool) over metrics that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")
# Grafana's built-in interval variables, replaced by a duration for promtool.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SECTIONS = ["Event flow", "Latency", "Lag and state", "Dead letters", "Segments", "Models",
            "LLM enrichment", "Actions"]


def dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


@pytest.fixture(params=dashboards(), ids=lambda p: p.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text(encoding="utf-8"))


def targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_there_is_a_dashboard():
    assert [p.name for p in dashboards()] == ["segstream.json"]


def test_structure(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == SECTIONS
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"], f"{p['title']}: no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]


def test_queries_use_only_known_metrics(dashboard, known_metrics):
    for title, expr in targets(dashboard):
        unknown = set(METRIC.findall(expr)) - known_metrics
        assert not unknown, f"{title}: unknown metrics {unknown}"


def test_queries_are_valid_promql(dashboard, promtool, tmp_path):
    """Each query as a recording rule: promtool parses and type-checks it."""
    rules = []
    for i, (title, expr) in enumerate(targets(dashboard)):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{title}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout


def test_promtool_check_catches_a_broken_query(promtool, tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "dashboard:bad", "expr": "sum by (le (rate(segstream_dlq_total[5m]))"}]}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0


def test_each_area_shows_its_key_metric(dashboard):
    exprs = " ".join(e for _, e in targets(dashboard))
    for metric in ("segstream_events_consumed_total", "segstream_e2e_append_time_seconds_bucket",
                   "segstream_e2e_event_time_seconds_bucket", "segstream_consumer_lag",
                   "segstream_dlq_total", "segstream_segment_members",
                   "segstream_segment_changes_total", "segstream_model_auc",
                   "segstream_model_logloss", "segstream_model_drift_total",
                   "segstream_llm_requests_total", "segstream_llm_tokens_total",
                   "segstream_llm_cache_total", "segstream_llm_request_seconds_bucket",
                   "segstream_llm_fallbacks_total", "segstream_llm_breaker_state",
                   "segstream_actions_produced_total", "segstream_actions_decisions_total",
                   "segstream_restore_remaining", "segstream_batch_size_bucket",
                   "segstream_commit_seconds_bucket", "segstream_transaction_seconds_bucket",
                   "segstream_batch_process_seconds_sum"):
        assert metric in exprs, f"the dashboard does not show {metric}"
