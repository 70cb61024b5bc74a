from pathlib import Path

import pytest

from streams.actions.config import ActionsConfig
from streams.exceptions import ConfigError

TOKEN = {"SEGSTREAM_ACTIONS_API_TOKEN": "s3cret-token-0123456789"}


def test_defaults_and_overrides():
    c = ActionsConfig.from_env({**TOKEN, "KAFKA_BOOTSTRAP_SERVERS": "h1:9092,h2:9092",
                                "SEGSTREAM_ACTIONS_WEB_PORT": "7001",
                                "SEGSTREAM_TOPIC_VIP_ROUTING": "x.routing",
                                "SEGSTREAM_TOPIC_CLICKS": "belongs.to.the.worker"})
    assert c.broker == "kafka://h1:9092,h2:9092" and c.bootstrap_servers == "h1:9092,h2:9092"
    assert c.web_port == 7001 and c.topics.vip_routing == "x.routing"
    assert c.guarantee == "exactly_once" and c.store == "memory"


def test_every_problem_is_listed_and_the_token_is_never_shown():
    with pytest.raises(ConfigError) as err:
        ActionsConfig.from_env({"SEGSTREAM_ACTIONS_API_TOKEN": "short-secret",
                                "SEGSTREAM_ACTIONS_WEB_PORT": "http",
                                "SEGSTREAM_ACTIONS_STORE": "redis",
                                "SEGSTREAM_ACTIONS_GUARANTEE": "maybe",
                                "SEGSTREAM_CAMPAIGNS_FILE": "/nonexistent.yaml"})
    text = str(err.value)
    for fragment in ("WEB_PORT", "STORE must be", "GUARANTEE must be", "API_TOKEN must be set",
                     "CAMPAIGNS_FILE /nonexistent.yaml does not exist"):
        assert fragment in text
    assert "short-secret" not in text


def test_confluent_driver_is_refused():
    with pytest.raises(ConfigError, match="kafka://host:port"):
        ActionsConfig.from_env({**TOKEN, "SEGSTREAM_ACTIONS_BROKER": "confluent://h:9092"})


def test_topic_names_must_be_distinct(tmp_path: Path):
    with pytest.raises(ConfigError, match="distinct"):
        ActionsConfig.from_env({**TOKEN, "SEGSTREAM_TOPIC_COUPONS": "same",
                                "SEGSTREAM_TOPIC_HOLDOUT": "same"})


def test_sasl_settings_are_shared_with_the_worker_and_checked():
    with pytest.raises(ConfigError, match="SASL needs"):
        ActionsConfig.from_env({**TOKEN, "SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    c = ActionsConfig.from_env({**TOKEN, "SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                "SEGSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                "SEGSTREAM_KAFKA_SASL_USERNAME": "svc",
                                "SEGSTREAM_KAFKA_SASL_PASSWORD": "pw-not-shown"})
    assert c.kafka_common()["sasl.username"] == "svc"
    assert "pw-not-shown" not in repr(c)
    creds = c.broker_credentials()
    assert creds.username == "svc" and creds.ssl_context is not None
    assert ActionsConfig.from_env(TOKEN).broker_credentials() is None
