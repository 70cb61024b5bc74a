"""Settings of the actions app, read once from ``SEGSTREAM_*`` variables.

Examples
--------
>>> c = ActionsConfig.from_env({"SEGSTREAM_ACTIONS_API_TOKEN": "t" * 32,
...                             "SEGSTREAM_TOPIC_COUPONS": "test.coupons"})
>>> (c.broker, c.topics.coupons, c.topics.changes)
('kafka://127.0.0.1:9092', 'test.coupons', 'segments.changes')
>>> c.api_token
Secret('**********')
>>> ActionsConfig.from_env({"SEGSTREAM_ACTIONS_BROKER": "confluent://127.0.0.1:9092"})
Traceback (most recent call last):
...
streams.exceptions.ConfigError: invalid actions configuration:
  SEGSTREAM_ACTIONS_BROKER must be kafka://host:port (faust's confluent:// driver does not work)
  SEGSTREAM_ACTIONS_API_TOKEN must be set (at least 16 characters) to protect GET /users/{id}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.config import Secret
from streams.exceptions import ConfigError

PREFIX = "SEGSTREAM_"
MIN_TOKEN = 16


@dataclass(frozen=True)
class ActionTopics:
    """Topic names of the actions app; each is renamed with ``SEGSTREAM_TOPIC_<ROLE>``."""

    changes: str = "segments.changes"
    churn: str = "alerts.churn"
    dlq: str = "segstream.dlq"
    coupons: str = "actions.coupons"
    holdout: str = "actions.holdout"
    vip_routing: str = "actions.vip-routing"
    alerts: str = "actions.alerts"
    churn_alerts: str = "actions.churn-alerts"

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.coupons, self.holdout, self.vip_routing, self.alerts, self.churn_alerts)


@dataclass(frozen=True)
class ActionsConfig:
    """Frozen, validated configuration of ``segstream actions``. Build with :meth:`from_env`."""

    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "segstream-actions"
    topics: ActionTopics = field(default_factory=ActionTopics)
    partitions: int = 6
    replication_factor: int = 1
    campaigns_file: Path | None = None
    api_token: Secret = field(default_factory=lambda: Secret(""))
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    holdout_seed: str = "segstream"
    state_dir: Path = Path(".local/actions")
    store: str = "memory"
    guarantee: str = "exactly_once"
    max_event_bytes: int = 64 * 1024
    log_level: str = "INFO"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_ca_location: str = ""

    def changelog_topic(self, table: str) -> str:
        """The compacted changelog topic of a state table (``users``, ``budgets``, ``churn``).

        >>> ActionsConfig().changelog_topic("users")
        'segstream-actions-users-changelog'
        """
        return f"{self.app_id}-{table}-changelog"

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port]`` for confluent-kafka admin calls."""
        return self.broker.removeprefix("kafka://").replace(";", ",")

    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings for the admin client that creates the topics."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers,
                                "client.id": self.app_id,
                                "security.protocol": self.kafka_security_protocol}
        if self.kafka_sasl_username:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = self.kafka_ssl_ca_location
        return conf

    def broker_credentials(self) -> Any:
        """faust's credentials object for the security settings (``None``: plaintext)."""
        import ssl

        from faust.auth import SASLCredentials, SSLCredentials

        proto = self.kafka_security_protocol
        context = None
        if proto in {"SSL", "SASL_SSL"}:
            context = ssl.create_default_context(cafile=self.kafka_ssl_ca_location or None)
        if proto.startswith("SASL"):
            return SASLCredentials(username=self.kafka_sasl_username,
                                   password=self.kafka_sasl_password.get_secret_value(),
                                   mechanism=self.kafka_sasl_mechanism, ssl_context=context)
        return SSLCredentials(context) if context is not None else None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ActionsConfig:
        """Read the actions settings; raise :class:`ConfigError` listing every problem.

        Variables: ``SEGSTREAM_ACTIONS_BROKER`` (or ``KAFKA_BOOTSTRAP_SERVERS``),
        ``_APP_ID``, ``_PARTITIONS``, ``_API_TOKEN``, ``_WEB_HOST``, ``_WEB_PORT``,
        ``_HOLDOUT_SEED``, ``_STATE_DIR``, ``_STORE`` (rocksdb|memory), ``_GUARANTEE``
        (exactly_once, the default, or at_least_once: see :mod:`streams.actions.loop`),
        ``_MAX_EVENT_BYTES``, plus ``SEGSTREAM_CAMPAIGNS_FILE``, ``SEGSTREAM_LOG_LEVEL``
        and ``SEGSTREAM_TOPIC_<ROLE>``.
        """
        p: list[str] = []
        a = PREFIX + "ACTIONS_"
        values: dict[str, object] = {}
        bootstrap = env.get(PREFIX + "KAFKA_BOOTSTRAP_SERVERS") or env.get(
            "KAFKA_BOOTSTRAP_SERVERS")
        broker = env.get(a + "BROKER", "").strip() or (
            f"kafka://{bootstrap.strip()}" if bootstrap else cls.broker)
        if not broker.startswith("kafka://") or ":" not in broker.removeprefix("kafka://"):
            p.append(f"{a}BROKER must be kafka://host:port (faust's confluent:// driver does "
                     "not work)")
        values["broker"] = broker
        for name, key in (("app_id", "APP_ID"), ("web_host", "WEB_HOST"),
                          ("holdout_seed", "HOLDOUT_SEED")):
            if env.get(a + key, "").strip():
                values[name] = env[a + key].strip()
        for name, key in (("partitions", "PARTITIONS"), ("web_port", "WEB_PORT"),
                          ("max_event_bytes", "MAX_EVENT_BYTES"),
                          ("replication_factor", "REPLICATION_FACTOR")):
            if env.get(a + key, "").strip():
                try:
                    values[name] = int(env[a + key])
                except ValueError:
                    p.append(f"{a}{key}={env[a + key]!r}: expected an integer")
        if env.get(a + "STATE_DIR", "").strip():
            values["state_dir"] = Path(env[a + "STATE_DIR"].strip())
        if env.get(PREFIX + "CAMPAIGNS_FILE", "").strip():
            values["campaigns_file"] = Path(env[PREFIX + "CAMPAIGNS_FILE"].strip())
        values["api_token"] = Secret(env.get(a + "API_TOKEN", "").strip())
        values["store"] = env.get(a + "STORE", cls.store).strip().lower()
        values["guarantee"] = env.get(a + "GUARANTEE", cls.guarantee).strip().lower()
        values["log_level"] = env.get(PREFIX + "LOG_LEVEL", cls.log_level).strip().upper()
        # the worker's Kafka security variables, shared
        k = PREFIX + "KAFKA_"
        values["kafka_security_protocol"] = env.get(k + "SECURITY_PROTOCOL",
                                                    "PLAINTEXT").strip().upper()
        values["kafka_sasl_mechanism"] = env.get(k + "SASL_MECHANISM", "").strip().upper()
        values["kafka_sasl_username"] = env.get(k + "SASL_USERNAME", "").strip()
        values["kafka_sasl_password"] = Secret(env.get(k + "SASL_PASSWORD", ""))
        values["kafka_ssl_ca_location"] = env.get(k + "SSL_CA_LOCATION", "").strip()
        roles = {f.name for f in dataclasses.fields(ActionTopics)}
        topic_values = {}
        for key, raw in env.items():
            if key.startswith(PREFIX + "TOPIC_"):
                role = key.removeprefix(PREFIX + "TOPIC_").lower()
                if role in roles:  # other roles belong to the worker
                    if not raw.strip():
                        p.append(f"{key}: topic name must not be empty")
                    topic_values[role] = raw.strip()
        values["topics"] = ActionTopics(**topic_values)
        config = cls(**values)  # type: ignore[arg-type]
        p.extend(config.problems())
        if p:
            raise ConfigError("invalid actions configuration:\n  " + "\n  ".join(p))
        return config

    def problems(self) -> list[str]:
        """Cross-field checks, each naming the variable to change."""
        a = PREFIX + "ACTIONS_"
        p: list[str] = []
        if len(self.api_token.get_secret_value()) < MIN_TOKEN:
            p.append(f"{a}API_TOKEN must be set (at least {MIN_TOKEN} characters) to protect "
                     "GET /users/{id}")
        if self.partitions < 1:
            p.append(f"{a}PARTITIONS must be >= 1 (the partition count of the change topic)")
        if self.replication_factor < 1:
            p.append(f"{a}REPLICATION_FACTOR must be >= 1")
        if not 0 <= self.web_port <= 65535:
            p.append(f"{a}WEB_PORT must be a TCP port")
        if self.store not in {"rocksdb", "memory"}:
            p.append(f"{a}STORE must be rocksdb or memory")
        if self.guarantee not in {"exactly_once", "at_least_once"}:
            p.append(f"{a}GUARANTEE must be exactly_once or at_least_once")
        if self.max_event_bytes < 256:
            p.append(f"{a}MAX_EVENT_BYTES must be >= 256")
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            p.append("SEGSTREAM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.campaigns_file is not None and not self.campaigns_file.is_file():
            p.append(f"SEGSTREAM_CAMPAIGNS_FILE {self.campaigns_file} does not exist")
        proto = self.kafka_security_protocol
        if proto not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            p.append("SEGSTREAM_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT "
                     "or SASL_SSL")
        if proto.startswith("SASL") and (
                self.kafka_sasl_mechanism not in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
                or not self.kafka_sasl_username or not self.kafka_sasl_password):
            p.append("SASL needs SEGSTREAM_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, "
                     "SCRAM-SHA-512), SEGSTREAM_KAFKA_SASL_USERNAME and _SASL_PASSWORD")
        if self.kafka_ssl_ca_location and not Path(self.kafka_ssl_ca_location).is_file():
            p.append(f"TLS file {self.kafka_ssl_ca_location} does not exist")
        names = [getattr(self.topics, f.name) for f in dataclasses.fields(ActionTopics)]
        if len(set(names)) != len(names):
            p.append(f"topic names must be distinct, got {names}")
        return p
