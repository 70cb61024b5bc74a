"""The one settings object of a segstream process.

Settings are read once, at start-up, from environment variables with the
``SEGSTREAM_`` prefix (plus the conventional ``KAFKA_BOOTSTRAP_SERVERS``), validated,
and then passed down as a frozen :class:`Settings`. Nothing below the CLI reads the
environment, so a test builds its settings with :meth:`Settings.from_env` on a dict.

Examples
--------
>>> s = Settings.from_env({"SEGSTREAM_PARTITIONS": "3", "SEGSTREAM_KAFKA_SASL_PASSWORD": "pw"})
>>> s.partitions
3
>>> s.kafka_sasl_password
Secret('**********')
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.learn.config import ModelConfig
from streams.exceptions import ConfigError

PREFIX = "SEGSTREAM_"
# Topic roles of the actions service (streams.actions.config), tolerated here.
ACTION_TOPIC_ROLES = frozenset({"coupons", "holdout", "vip_routing", "alerts",
                                "churn_alerts"})


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Topics:
    """Topic names; every one can be renamed so several deployments share a cluster."""

    clicks: str = "shop.clicks"
    orders: str = "shop.orders"
    reviews: str = "shop.reviews"
    dlq: str = "segstream.dlq"
    changes: str = "segments.changes"
    current: str = "segments.current"
    # compacted: every user-state write, the source a store is restored from
    changelog: str = "segstream.state-changelog"
    # right-to-be-forgotten requests (keyed by user_id, co-partitioned with the inputs)
    erase: str = "user.erase"
    # one record per completed erasure, kept for the compliance trail
    audit: str = "segstream.audit"
    # churn-risk alerts and model events (drift detections)
    churn: str = "alerts.churn"
    model_events: str = "segstream.model-events"
    # LLM-enriched reviews (optional input; see streams.enrich)
    enriched: str = "shop.reviews.enriched"
    # with SEGSTREAM_MODELS_STAGE=separate: users due for scoring (event worker -> scoring
    # stage), the scoring stage's state changelog and its compacted current records
    scoring: str = "segstream.scoring"
    scoring_changelog: str = "segstream.scoring-changelog"
    scoring_current: str = "segments.current.models"

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.clicks, self.orders, self.reviews)


@dataclass(frozen=True)
class Settings:
    """Frozen, validated configuration. Build it with :meth:`from_env`."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "segstream"
    # Static membership (e.g. the StatefulSet pod name): a restarted worker gets its
    # partitions back at once instead of after a rebalance.
    group_instance_id: str = ""
    session_timeout_ms: int = 45_000
    # "consumer" (KIP-848, Kafka >= 4.0: incremental, sticky, co-partitioning range
    # assignment by the broker) or "classic" (eager range assignment, older brokers)
    group_protocol: str = "consumer"
    # "exactly_once": outputs, changelog and input offsets in one Kafka transaction per
    # batch; "at_least_once": outputs flushed before offsets commit, ids deterministic
    processing_guarantee: str = "exactly_once"
    # Stable per process across restarts, so a restarted worker fences its zombie; empty:
    # "<group>-<group_instance_id>" or an id kept in the state directory.
    transactional_id: str = ""
    transaction_timeout_ms: int = 60_000
    # How often outputs, state and offsets are committed (one transaction per interval).
    # Exactly-once outputs become visible to read_committed readers at the commit, so
    # this bounds end-to-end latency: 100 ms cut p99 at 10k events/s from ~760 ms to
    # ~280-400 ms (bench/suite.py --only latency) at ~12 % of throughput with models.
    commit_interval_ms: int = 500
    # A repeated event_id for the same user within this window (event time) is ignored.
    dedupe_window_s: int = 86_400
    dedupe_max_ids: int = 512
    # Time-based re-evaluation: each user is re-evaluated on this event-time grid when the
    # partition's watermark passes it (0: off) ...
    timer_granularity_s: int = 86_400
    # ... and, when > 0, every N wall-clock seconds for idle partitions, as of
    # now - allowed lateness (live deployments whose traffic can pause).
    wall_clock_punctuation_s: int = 0
    # Fold LLM-enriched reviews (streams.enrich) into the text features as they arrive.
    consume_enriched: bool = True
    # Review text: "local" (embedded analyzer, no network) or "off"; the local sentiment
    # model keeps learning from the stream's star ratings unless text_learn is false
    # (then text features depend only on the shipped model: fully reproducible replays).
    text_analyzer: str = "local"
    text_learn: bool = True
    # The online models (SEGSTREAM_MODELS_*, SEGSTREAM_CHURN_*, see models.learn.config).
    models: ModelConfig = field(default_factory=ModelConfig)
    # Where the models run: "inline" (in the event worker: one process, about half the
    # rules-only throughput) or "separate" (the event worker sends users due for scoring
    # to SEGSTREAM_TOPIC_SCORING; `segstream scoring` runs the models in a consumer group
    # of its own). See docs/models.md, "Where the models run".
    models_stage: str = "inline"
    # "events" (the worker of the input topics) or "scoring" (the scoring stage; set by
    # Settings.scoring_stage(), which `segstream scoring` applies)
    role: str = "events"
    client_id: str = "segstream"
    topics: Topics = field(default_factory=Topics)
    partitions: int = 6
    replication_factor: int = 1
    state_dir: Path = Path(".local/state")
    batch_size: int = 500
    # Event-time alignment of the input topics (see streams/runtime/align.py).
    align_max_idle_ms: int = 1_000
    # Messages buffered per input topic-partition before it is paused. Each costs ~1 KiB
    # decoded; 20,000 held ~90 MiB more at peak in the 100k-user memory benchmark.
    align_max_buffer: int = 2_500
    # The longest consume() waits for a full batch; 0.05 lowers latency at low traffic.
    poll_timeout_s: float = 0.5
    max_event_bytes: int = 64 * 1024
    allowed_lateness_s: int = 3600
    max_future_skew_s: int = 300
    min_event_year: int = 2000
    segments_file: Path | None = None
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True
    # Decoded user states kept in memory by all the worker's stores together (the rest
    # lives in RocksDB); a few KiB each.
    cache_users: int = 20_000
    # RocksDB memtables of all the worker's stores together (one write buffer manager):
    # unbounded, each store's memtables grew to 64-128 MiB, ~400 MiB at 1M users.
    state_memtable_mb: int = 64
    # glibc malloc arenas of the worker process (0: glibc's default of 8 per core); see
    # streams/runtime/memory.py.
    malloc_arenas: int = 2
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_ssl_ca_location: str = ""
    kafka_ssl_certificate_location: str = ""
    kafka_ssl_key_location: str = ""
    kafka_ssl_key_password: Secret = field(default_factory=lambda: Secret(""))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``SEGSTREAM_*`` variables (and ``KAFKA_BOOTSTRAP_SERVERS``).

        Raises
        ------
        ConfigError
            Listing every variable that is malformed, so an operator fixes all at once.
        """
        env = dict(os.environ if env is None else env)
        problems: list[str] = []
        values: dict[str, Any] = {}
        topic_values: dict[str, str] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}

        bootstrap = env.get(PREFIX + "KAFKA_BOOTSTRAP_SERVERS") or env.get(
            "KAFKA_BOOTSTRAP_SERVERS"
        )
        if bootstrap:
            values["bootstrap_servers"] = bootstrap

        for key, raw in env.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :].lower()
            if name == "kafka_bootstrap_servers":
                continue
            if name.startswith("topic_"):
                tname = name[len("topic_") :]
                if tname in ACTION_TOPIC_ROLES:
                    continue  # read by streams.actions.config (one environment for all)
                if tname not in {f.name for f in dataclasses.fields(Topics)}:
                    problems.append(f"{key}: unknown topic role {tname!r}")
                elif not raw.strip():
                    problems.append(f"{key}: topic name must not be empty")
                else:
                    topic_values[tname] = raw.strip()
                continue
            if name not in fields or name in ("topics", "models"):
                continue  # other SEGSTREAM_ variables belong to other processes (llm, actions)
            try:
                values[name] = _coerce(fields[name], raw)
            except ValueError as exc:
                problems.append(f"{key}={_shown(name, raw)}: {exc}")
        try:
            values["models"] = ModelConfig.from_env(env)
        except ConfigError as exc:
            problems.append(str(exc).removeprefix("invalid configuration:").strip())
        values.update(overrides)
        if topic_values:
            values["topics"] = dataclasses.replace(values.get("topics", Topics()), **topic_values)
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check cross-field rules; raise :class:`ConfigError` naming what to change."""
        p: list[str] = []
        if not self.bootstrap_servers.strip():
            p.append("KAFKA_BOOTSTRAP_SERVERS must name at least one host:port")
        for hp in self.bootstrap_servers.split(","):
            if ":" not in hp:
                p.append(f"bootstrap server {hp!r} needs a port (host:port)")
        if self.partitions < 1:
            p.append("SEGSTREAM_PARTITIONS must be >= 1")
        if self.models_stage not in ("inline", "separate"):
            p.append("SEGSTREAM_MODELS_STAGE must be inline or separate")
        elif self.models_stage == "separate" and not self.models.enabled:
            p.append("SEGSTREAM_MODELS_STAGE=separate needs SEGSTREAM_MODELS_ENABLED=true "
                     "(there is nothing to score otherwise)")
        if self.role not in ("events", "scoring"):
            p.append("SEGSTREAM_ROLE must be events or scoring (or leave it unset and run "
                     "`segstream scoring` for the scoring stage)")
        if self.replication_factor < 1:
            p.append("SEGSTREAM_REPLICATION_FACTOR must be >= 1")
        if not 6_000 <= self.session_timeout_ms <= 300_000:
            p.append("SEGSTREAM_SESSION_TIMEOUT_MS must be between 6000 and 300000 (the "
                     "broker's group.min/max.session.timeout.ms defaults)")
        if self.text_analyzer not in {"local", "off"}:
            p.append("SEGSTREAM_TEXT_ANALYZER must be local or off")
        if self.group_protocol not in {"consumer", "classic"}:
            p.append("SEGSTREAM_GROUP_PROTOCOL must be consumer (Kafka >= 4.0) or classic")
        if self.processing_guarantee not in {"exactly_once", "at_least_once"}:
            p.append("SEGSTREAM_PROCESSING_GUARANTEE must be exactly_once or at_least_once")
        if not 1_000 <= self.transaction_timeout_ms <= 900_000:
            p.append("SEGSTREAM_TRANSACTION_TIMEOUT_MS must be between 1000 and 900000 (the "
                     "broker's transaction.max.timeout.ms default)")
        if not 0 <= self.commit_interval_ms <= 60_000:
            p.append("SEGSTREAM_COMMIT_INTERVAL_MS must be between 0 and 60000")
        if self.dedupe_window_s < 0 or self.dedupe_max_ids < 0:
            p.append("SEGSTREAM_DEDUPE_WINDOW_S and SEGSTREAM_DEDUPE_MAX_IDS must be >= 0")
        if self.timer_granularity_s < 0 or self.wall_clock_punctuation_s < 0:
            p.append("SEGSTREAM_TIMER_GRANULARITY_S and SEGSTREAM_WALL_CLOCK_PUNCTUATION_S "
                     "must be >= 0")
        if not 1 <= self.batch_size <= 100_000:
            p.append("SEGSTREAM_BATCH_SIZE must be between 1 and 100000")
        if self.align_max_idle_ms < 0:
            p.append("SEGSTREAM_ALIGN_MAX_IDLE_MS must be >= 0")
        if self.align_max_buffer < self.batch_size:
            p.append("SEGSTREAM_ALIGN_MAX_BUFFER must be >= SEGSTREAM_BATCH_SIZE")
        if self.poll_timeout_s <= 0:
            p.append("SEGSTREAM_POLL_TIMEOUT_S must be > 0")
        if self.max_event_bytes < 256:
            p.append("SEGSTREAM_MAX_EVENT_BYTES must be >= 256")
        if self.allowed_lateness_s < 0:
            p.append("SEGSTREAM_ALLOWED_LATENESS_S must be >= 0")
        if self.max_future_skew_s < 0:
            p.append("SEGSTREAM_MAX_FUTURE_SKEW_S must be >= 0")
        if not 1970 <= self.min_event_year <= 2100:
            p.append("SEGSTREAM_MIN_EVENT_YEAR must be a year between 1970 and 2100")
        if not 0 <= self.metrics_port <= 65535:
            p.append("SEGSTREAM_METRICS_PORT must be 0 (off) or a TCP port")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            p.append("SEGSTREAM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.cache_users < 100:
            p.append("SEGSTREAM_CACHE_USERS must be >= 100")
        if not 0 <= self.malloc_arenas <= 64:
            p.append("SEGSTREAM_MALLOC_ARENAS must be between 0 (glibc default) and 64")
        if not 4 <= self.state_memtable_mb <= 65_536:
            p.append("SEGSTREAM_STATE_MEMTABLE_MB must be between 4 and 65536")
        if self.segments_file is not None and not self.segments_file.is_file():
            p.append(f"SEGSTREAM_SEGMENTS_FILE {self.segments_file} does not exist")
        names = [getattr(self.topics, f.name) for f in dataclasses.fields(Topics)]
        if len(set(names)) != len(names):
            p.append(f"topic names must be distinct, got {names}")
        proto = self.kafka_security_protocol.upper()
        if proto not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            p.append("SEGSTREAM_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT "
                     "or SASL_SSL")
        if proto.startswith("SASL"):
            if self.kafka_sasl_mechanism.upper() not in {
                "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"
            }:
                p.append("SASL needs SEGSTREAM_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, "
                         "SCRAM-SHA-512)")
            if self.kafka_sasl_mechanism.upper() != "OAUTHBEARER" and not (
                self.kafka_sasl_username and self.kafka_sasl_password
            ):
                p.append("SASL needs SEGSTREAM_KAFKA_SASL_USERNAME and "
                         "SEGSTREAM_KAFKA_SASL_PASSWORD")
        for loc in (self.kafka_ssl_ca_location, self.kafka_ssl_certificate_location,
                    self.kafka_ssl_key_location):
            if loc and not Path(loc).is_file():
                p.append(f"TLS file {loc} does not exist")
        if p:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(p))

    def scoring_stage(self) -> Settings:
        """These settings for the scoring stage of ``SEGSTREAM_MODELS_STAGE=separate``.

        Why derived rather than configured twice: the scoring stage must agree with the
        event worker on the topics and the model settings, and must differ from it in
        its consumer group, state (changelog, directory), transactional id and current
        records, or the two would fence each other and overwrite each other's state.

        >>> s = Settings(models_stage="separate", models=ModelConfig(enabled=True))
        >>> z = s.scoring_stage()
        >>> z.group_id, z.topics.changelog, z.topics.current, z.state_dir.name
        ('segstream-scoring', 'segstream.scoring-changelog', 'segments.current.models', 'scoring')
        """
        if self.models_stage != "separate":
            raise ConfigError("the scoring stage runs with SEGSTREAM_MODELS_STAGE=separate "
                              "(and SEGSTREAM_MODELS_ENABLED=true); with the models inline "
                              "the worker scores users itself")
        t = self.topics
        derived = dataclasses.replace(
            self, role="scoring", group_id=f"{self.group_id}-scoring",
            group_instance_id=(f"{self.group_instance_id}-scoring" if self.group_instance_id
                               else ""),
            transactional_id=(f"{self.transactional_id}-scoring" if self.transactional_id
                              else ""),
            client_id=f"{self.client_id}-scoring",
            state_dir=self.state_dir / "scoring", consume_enriched=False,
            # swapped, not copied: the event worker's names stay taken (and distinct)
            topics=dataclasses.replace(t, changelog=t.scoring_changelog,
                                       current=t.scoring_current,
                                       scoring_changelog=t.changelog,
                                       scoring_current=t.current))
        derived.validate()
        return derived

    # ------------------------------------------------------------ kafka config
    def kafka_common(self) -> dict[str, Any]:
        """librdkafka settings shared by consumers, producers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.kafka_security_protocol.upper(),
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism.upper()
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            conf["ssl.ca.location"] = self.kafka_ssl_ca_location
        if self.kafka_ssl_certificate_location:
            conf["ssl.certificate.location"] = self.kafka_ssl_certificate_location
        if self.kafka_ssl_key_location:
            conf["ssl.key.location"] = self.kafka_ssl_key_location
        if self.kafka_ssl_key_password:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return conf

    def redacted(self) -> dict[str, Any]:
        """A loggable view: secrets stay masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if isinstance(v, (Topics, ModelConfig)) else (
                repr(v) if isinstance(v, Secret) else str(v) if isinstance(v, Path) else v
            )
        return out


def _shown(name: str, raw: str) -> str:
    return "'**********'" if "password" in name or "secret" in name else repr(raw)


def _coerce(f: dataclasses.Field[Any], raw: str) -> Any:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    raw = raw.strip()
    if t == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expected an integer") from None
    if t == "float":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    if t == "bool":
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if t == "Path":
        return Path(raw)
    if t == "Path | None":
        return Path(raw) if raw else None
    if t == "Secret":
        return Secret(raw)
    return raw
