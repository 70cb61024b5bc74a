"""HTTP endpoint settings: defaults, parsing and messages that say what to fix."""

from __future__ import annotations

import pytest

from streams.exceptions import ConfigError
from streams.http.config import HttpSettings


def test_defaults_without_variables():
    s = HttpSettings.from_env({})
    assert s == HttpSettings()
    assert s.status_points * s.status_interval_s == 1800  # half an hour of history


def test_reads_every_variable():
    s = HttpSettings.from_env({
        "SEGSTREAM_READY_BROKER_TIMEOUT_S": "45", "SEGSTREAM_LIVE_STALL_TIMEOUT_S": "0",
        "SEGSTREAM_STATUS_INTERVAL_S": "2.5", "SEGSTREAM_STATUS_POINTS": "100",
        "SEGSTREAM_GROUP_ID": "other-settings-are-ignored"})
    assert s == HttpSettings(45.0, 0.0, 2.5, 100)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as err:
        HttpSettings.from_env({"SEGSTREAM_STATUS_POINTS": "lots",
                               "SEGSTREAM_STATUS_INTERVAL_S": "x"})
    msg = str(err.value)
    assert "SEGSTREAM_STATUS_POINTS='lots': expected an integer" in msg
    assert "SEGSTREAM_STATUS_INTERVAL_S='x'" in msg


@pytest.mark.parametrize(("var", "value"), [
    ("SEGSTREAM_READY_BROKER_TIMEOUT_S", "0"), ("SEGSTREAM_LIVE_STALL_TIMEOUT_S", "-1"),
    ("SEGSTREAM_STATUS_INTERVAL_S", "0.01"), ("SEGSTREAM_STATUS_POINTS", "1")])
def test_out_of_range_values_name_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        HttpSettings.from_env({var: value})
