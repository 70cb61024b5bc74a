from pathlib import Path

from click.testing import CliRunner

from streams.actions.cli import actions

TOKEN = {"SEGSTREAM_ACTIONS_API_TOKEN": "cli-token-0123456789"}


def test_campaigns_lists_the_shipped_campaigns():
    result = CliRunner().invoke(actions, ["campaigns"], env={"SEGSTREAM_CAMPAIGNS_FILE": ""})
    assert result.exit_code == 0, result.output
    assert "price_sensitive_welcome" in result.output
    assert "vip_priority" in result.output and "queue vip (priority 1)" in result.output


def test_an_invalid_campaign_file_exits_2_with_the_fix(tmp_path: Path):
    bad = tmp_path / "c.yaml"
    bad.write_text("campaigns: {x: {when: {segment: vip, change: entered},"
                   " coupon: {type: percent, value: 500, validity: 1d}}}")
    result = CliRunner().invoke(actions, ["campaigns"],
                                env={**TOKEN, "SEGSTREAM_CAMPAIGNS_FILE": str(bad)})
    assert result.exit_code == 2
    assert "campaign 'x'" in result.output and "0 < value <= 100" in result.output


def test_a_missing_token_exits_2_before_anything_starts():
    result = CliRunner().invoke(actions, ["run"], env={"SEGSTREAM_ACTIONS_API_TOKEN": ""})
    assert result.exit_code == 2
    assert "SEGSTREAM_ACTIONS_API_TOKEN must be set" in result.output
