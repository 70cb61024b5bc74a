"""``segments describe`` end to end through click, with and without an LLM endpoint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from streams.enrich.cli import enrich, make_describe_command
from tests.streams.enrich.fake_llm import FakeLLM

PROFILES = [
    {"cluster": 0, "size": 900, "share": 0.45, "distinctive": [
        {"feature": "spend_365d", "value": 1200.0, "overall": 300.0}]},
    {"cluster": 1, "size": 300, "share": 0.15, "distinctive": [
        {"feature": "logistics_complaints_90d", "value": 1.2, "overall": 0.1}]},
]
NO_LLM = {"SEGSTREAM_LLM_MODEL": "", "SEGSTREAM_LLM_BASE_URL": "", "OPENAI_API_KEY": "",
          "SEGSTREAM_LLM_API_KEY": ""}


def run(args, env):
    result = CliRunner().invoke(make_describe_command(), args, env=env)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


@pytest.fixture
def files(tmp_path):
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps(PROFILES))
    return profiles, tmp_path / "cache.json"


def test_template_without_an_llm(files):
    profiles, cache = files
    rows = run(["--profiles", str(profiles), "--cache", str(cache), "--json"], NO_LLM)
    assert [r["source"] for r in rows] == ["template", "template"]
    assert "net spend in the last 365d (refunds subtracted) much higher (1,200 vs 300)" \
        in rows[0]["text"]


def test_llm_descriptions_are_cached_until_the_profile_shifts(files):
    profiles, cache = files
    server = FakeLLM()
    server.default = "plain"
    env = {**NO_LLM, "SEGSTREAM_LLM_MODEL": "m", "SEGSTREAM_LLM_BASE_URL": server.base_url}
    try:
        rows = run(["--profiles", str(profiles), "--cache", str(cache), "--json"], env)
        assert [r["source"] for r in rows] == ["segment-description.v1"] * 2
        assert len(server.requests) == 2
        rows = run(["--profiles", str(profiles), "--cache", str(cache), "--json"], env)
        assert all(r["cached"] for r in rows) and len(server.requests) == 2
        shifted = [PROFILES[0], {**PROFILES[1], "size": 600, "share": 0.3}]
        profiles.write_text(json.dumps(shifted))
        rows = run(["--profiles", str(profiles), "--cache", str(cache), "--json"], env)
        assert [r["cached"] for r in rows] == [True, False] and len(server.requests) == 3
    finally:
        server.close()


def test_profiles_from_a_callable(tmp_path):
    cmd = make_describe_command(lambda: PROFILES[:1])
    result = CliRunner().invoke(cmd, ["--cache", str(tmp_path / "c.json")], env=NO_LLM)
    assert result.exit_code == 0 and result.output.startswith("[template] Cluster 0:")


def test_enrich_refuses_to_start_without_an_llm():
    result = CliRunner().invoke(enrich, [], env={**NO_LLM,
                                                 "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.exit_code == 2  # a start-up error: says what to set, no traceback
    assert "SEGSTREAM_LLM_MODEL" in result.output
