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
        ({"SEGSTREAM_MODELS_STAGE": "remote"}, "SEGSTREAM_MODELS_STAGE must be inline or sep"),
        ({"SEGSTREAM_MODELS_STAGE": "separate"}, "needs SEGSTREAM_MODELS_ENABLED=true"),
        ({"SEGSTREAM_ROLE": "both"}, "SEGSTREAM_ROLE must be events or scoring"),
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


def test_the_scoring_stage_differs_from_the_event_worker_where_it_must():
    """Same topics and models; its own group, changelog, current records, state and
    transactional id, or the two stages would fence and overwrite each other."""
    s = Settings.from_env({"SEGSTREAM_MODELS_ENABLED": "true",
                           "SEGSTREAM_MODELS_STAGE": "separate",
                           "SEGSTREAM_TRANSACTIONAL_ID": "w-1",
                           "SEGSTREAM_GROUP_INSTANCE_ID": "pod-1"})
    z = s.scoring_stage()
    assert z.role == "scoring" and not z.consume_enriched
    differ = ("group_id", "group_instance_id", "transactional_id", "state_dir", "client_id")
    assert all(getattr(z, f) != getattr(s, f) for f in differ)
    assert (z.topics.changelog, z.topics.current) == (s.topics.scoring_changelog,
                                                      s.topics.scoring_current)
    assert z.topics.scoring == s.topics.scoring and z.models == s.models
    assert z.topics.changes == s.topics.changes and z.topics.churn == s.topics.churn
    z.validate()


def test_no_scoring_stage_with_the_models_inline():
    s = Settings.from_env({"SEGSTREAM_MODELS_ENABLED": "true"})
    with pytest.raises(ConfigError, match="SEGSTREAM_MODELS_STAGE=separate"):
        s.scoring_stage()
