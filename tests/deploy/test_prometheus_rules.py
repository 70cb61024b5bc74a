"""Prometheus config and alert rules, checked by the real promtool.

``promtool check config`` / ``check rules`` validate syntax and PromQL; ``promtool test
rules`` runs the unit tests in ``deploy/prometheus/alerts_test.yml``. The structural
tests make sure every alert is tested both ways, has a runbook section, and reads only
metrics that exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
ALERTS = PROM / "alerts.yml"
TESTS = PROM / "alerts_test.yml"
CONFIG = PROM / "prometheus.yml"
RUNBOOK = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")

# Product requirement -> the alert that covers it.
REQUIRED = {
    "lag growing": "SegstreamConsumerLagGrowing",
    "no events for N minutes": "SegstreamNoEvents",
    "DLQ rate above a share of input": "SegstreamDeadLetterRateHigh",
    "end-to-end p99 latency above an SLO": "SegstreamLatencySLOBreached",
    "model AUC below a floor": "SegstreamModelAUCLow",
    "drift detected": "SegstreamModelDriftDetected",
    "LLM error rate": "SegstreamLLMErrorRateHigh",
    "LLM budget exhausted": "SegstreamLLMBudgetExhausted",
    "worker down": "SegstreamWorkerDown",
}


def run(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


# ------------------------------------------------------------------------ promtool
def test_promtool_check_config(promtool):
    r = run(promtool, "check", "config", CONFIG.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout


def test_promtool_check_rules(promtool):
    r = run(promtool, "check", "rules", ALERTS.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in r.stdout


def test_promtool_rule_unit_tests_pass(promtool):
    r = run(promtool, "test", "rules", TESTS.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_rule_unit_tests_catch_a_changed_threshold(promtool, tmp_path):
    """The unit tests pin the thresholds: loosening the AUC floor makes them fail."""
    shutil.copy(TESTS, tmp_path / TESTS.name)
    text = ALERTS.read_text(encoding="utf-8")
    assert 'segstream_model_auc{window="rolling"} < 0.65' in text
    (tmp_path / ALERTS.name).write_text(text.replace(
        'segstream_model_auc{window="rolling"} < 0.65',
        'segstream_model_auc{window="rolling"} < 0.5'))
    r = run(promtool, "test", "rules", TESTS.name, cwd=tmp_path)
    assert r.returncode != 0
    assert "SegstreamModelAUCLow" in r.stdout + r.stderr


# ---------------------------------------------------------------------- structure
def test_product_requirements_have_an_alert():
    names = {r["alert"] for r in alert_rules()}
    missing = {need: name for need, name in REQUIRED.items() if name not in names}
    assert not missing


def test_alerts_have_severity_summary_and_a_runbook_section():
    headings = {m.group(1).strip().lower().replace(" ", "-")
                for m in re.finditer(r"^#+\s+(.+)$", RUNBOOK.read_text(encoding="utf-8"),
                                     re.MULTILINE)}
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/operations.md has no section {name}"


def test_every_alert_is_tested_firing_and_quiet():
    doc = yaml.safe_load(TESTS.read_text(encoding="utf-8"))
    assert doc["rule_files"] == [ALERTS.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


def test_rules_read_only_metrics_that_exist(known_metrics):
    for rule in alert_rules():
        unknown = set(METRIC.findall(rule["expr"])) - known_metrics
        assert not unknown, f"{rule['alert']}: unknown metrics {unknown}"


def test_scrape_jobs_match_the_jobs_the_rules_name():
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert "segstream-worker" in jobs
    named = set(re.findall(r'job="(segstream-[a-z]+)"',
                           " ".join(r["expr"] for r in alert_rules())))
    assert named == {"segstream-worker"}
    assert config["rule_files"] == [ALERTS.name]
