"""Fixtures for the deployment tests: the real ``promtool`` (Debian's prometheus package)
and the metric names that rules and dashboards may use (those the metric classes of
``streams/metrics.py`` expose, so a renamed metric fails the rule and dashboard tests).

On CI (``CI=true``) a missing binary fails the test, so a machine without it cannot
pass silently; on a developer machine the tests skip with the command that installs it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import streams.metrics as metrics_module

ROOT = Path(__file__).resolve().parents[2]


def require_binary(name: str, package: str) -> str:
    """Path of ``name`` on PATH; fail on CI, skip elsewhere, when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found: apt-get install -y {package} (.ci/run does)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")


def _from_code() -> set[str]:
    """Sample names of every metric class in streams/metrics.py, built on a registry."""
    names: set[str] = set()
    for obj in vars(metrics_module).values():
        if (isinstance(obj, type) and obj.__module__ == metrics_module.__name__
                and obj.__name__.endswith("Metrics")):
            reg = CollectorRegistry()
            obj(reg)
            for family in reg.collect():
                names.add(family.name)
                names.update(_suffixed(family.name, family.type))
    return names


def _suffixed(name: str, kind: str) -> set[str]:
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "counter":
        return {f"{name}_total"}
    return {name}


def known_metric_names() -> set[str]:
    """Every sample name a PromQL expression may reference: what the code exposes."""
    return _from_code()


def referenced(expr: str) -> set[str]:
    """The segstream metric names in a PromQL expression."""
    return set(METRIC.findall(expr))


@pytest.fixture(scope="session")
def known_metrics() -> set[str]:
    return known_metric_names()
