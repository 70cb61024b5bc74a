"""Settings: one frozen object from the environment, secrets masked, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from streams.config import Settings
from streams.exceptions import ConfigError


def test_defaults_and_overrides():
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
                           "SEGSTREAM_PARTITIONS": "3", "SEGSTREAM_TOPIC_CLICKS": "c",
                           "SEGSTREAM_LOG_JSON": "false"})
    assert s.bootstrap_servers == "127.0.0.1:19092" and s.partitions == 3
    assert s.topics.clicks == "c" and s.topics.inputs == ("c", "shop.orders", "shop.reviews")
    assert s.log_json is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.partitions = 4  # type: ignore[misc]


def test_prefixed_bootstrap_wins():
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "a:1",
                           "SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": "b:2"})
    assert s.bootstrap_servers == "b:2"


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SEGSTREAM_PARTITIONS": "six", "SEGSTREAM_BATCH_SIZE": "x",
                           "SEGSTREAM_TOPIC_NOPE": "t"})
    msg = str(info.value)
    assert "SEGSTREAM_PARTITIONS='six': expected an integer" in msg
    assert "SEGSTREAM_BATCH_SIZE" in msg and "unknown topic role 'nope'" in msg


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "needs a port"),
        ({"SEGSTREAM_PARTITIONS": "0"}, "SEGSTREAM_PARTITIONS must be >= 1"),
        ({"SEGSTREAM_LOG_LEVEL": "LOUD"}, "SEGSTREAM_LOG_LEVEL"),
        ({"SEGSTREAM_SEGMENTS_FILE": "/nope.yaml"}, "does not exist"),
        ({"SEGSTREAM_TOPIC_DLQ": "shop.clicks"}, "distinct"),
        ({"SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SEGSTREAM_KAFKA_SASL_MECHANISM"),
    ],
)
def test_invalid_configuration_says_what_to_fix(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_secrets_never_show():
    s = Settings.from_env({"SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                           "SEGSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                           "SEGSTREAM_KAFKA_SASL_USERNAME": "svc",
                           "SEGSTREAM_KAFKA_SASL_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.redacted())
    assert s.kafka_common()["sasl.password"] == "hunter2"
    assert s.kafka_common()["sasl.mechanism"] == "SCRAM-SHA-512"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SEGSTREAM_KAFKA_SASL_PASSWORD": "hunter2",
                           "SEGSTREAM_BATCH_SIZE": "nope"})
    assert "hunter2" not in str(info.value)
