"""The CLI refuses bad configuration at start-up with exit code 2 and a useful message."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from streams.cli import cli


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"SEGSTREAM_PARTITIONS": "six"}, ["worker"], "SEGSTREAM_PARTITIONS='six'"),
        ({"SEGSTREAM_SEGMENTS_FILE": "/nonexistent.yaml"}, ["segments"], "does not exist"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, ["worker"], "needs a port"),
    ],
)
def test_bad_configuration_fails_at_start_up(env, args, message):
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_invalid_segment_file_names_the_segment(tmp_path):
    f = tmp_path / "segments.yaml"
    f.write_text("segments:\n  vip:\n    enter: ['spend_365 >= 1000']\n"
                 "    exit: ['spend_365d < 700']\n")
    result = CliRunner().invoke(cli, ["segments"], env={"SEGSTREAM_SEGMENTS_FILE": str(f)})
    assert result.exit_code == 2
    assert "segment 'vip'" in result.output and "unknown feature 'spend_365'" in result.output


def test_secrets_do_not_leak_into_errors():
    env = {"SEGSTREAM_KAFKA_SASL_PASSWORD": "s3cr3t-pw", "SEGSTREAM_BATCH_SIZE": "many"}
    result = CliRunner().invoke(cli, ["segments"], env=env)
    assert result.exit_code == 2 and "s3cr3t-pw" not in result.output


def test_replay_command_writes_outputs(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"type": "order", "event_id": "e1", "user_id": "u1", '
                   '"ts": "2024-01-01T00:00:00Z", "schema_version": 1, "order_id": "o1", '
                   '"status": "placed", "total": 20, "currency": "EUR"}\nnot json\n')
    result = CliRunner().invoke(cli, ["replay", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert '"malformed_json": 1' in result.output
    assert (tmp_path / "out" / "snapshot.jsonl").read_text().count("\n") == 1
