"""Shared fixtures. Integration tests get a real broker and their own topics and group."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A reachable broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the project's own one.

    The broker started here is left running for later sessions; ``make test`` and
    ``.ci/run`` stop it.
    """
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    subprocess.run([str(KAFKA_SH), "start"], check=True)
    out = subprocess.run([str(KAFKA_SH), "bootstrap"], check=True, capture_output=True,
                         text=True)
    yield out.stdout.strip()


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "").lower()[:40]
    return f"t{uuid.uuid4().hex[:8]}-{name}"
