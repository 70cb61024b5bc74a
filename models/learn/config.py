"""Settings of the online models, read once from ``SEGSTREAM_MODEL*`` variables.

Why a separate frozen dataclass: the models are optional (``SEGSTREAM_MODELS_ENABLED``) and
their knobs (label horizon, tiers, debounce, drift policy, snapshots) belong together; the
process settings nest this object instead of growing a flat list of fields.

Examples
--------
>>> cfg = ModelConfig.from_env({"SEGSTREAM_CHURN_HORIZON_DAYS": "92"})
>>> cfg.horizon_ms // 86_400_000, cfg.tier_high, cfg.drift_policy
(92, 0.7, 'keep')
>>> ModelConfig.from_env({"SEGSTREAM_MODEL_DRIFT_POLICY": "panic"})
Traceback (most recent call last):
...
streams.exceptions.ConfigError: invalid model configuration:
  SEGSTREAM_MODEL_DRIFT_POLICY='panic': use one of keep, reset, rollback
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.exceptions import ConfigError

DAY_MS = 86_400_000
DRIFT_POLICIES = ("keep", "reset", "rollback")
CLUSTER_ALGORITHMS = ("sequential", "kmeans", "streamkmeans")


@dataclass(frozen=True)
class ModelConfig:
    """Everything the model suite needs; see ``docs/models.md`` for the meaning of each.

    Tier thresholds use hysteresis: a user enters ``high`` at ``tier_high`` and leaves it
    only below ``tier_high - hysteresis`` (same for ``medium``), so a score wobbling around
    a threshold does not flap the segment.
    """

    enabled: bool = False
    name: str = "suite"
    horizon_days: int = 30
    tier_high: float = 0.7
    tier_medium: float = 0.4
    hysteresis: float = 0.05
    debounce_s: int = 86_400
    max_staleness_s: int = 604_800
    materiality: float = 0.1
    snapshot_gap_s: int = 604_800
    max_pending: int = 8
    early_labels: bool = False
    snapshot_idle_days: int = 365
    clusters: int = 6
    cluster_algorithm: str = "sequential"
    cluster_learn_every: int = 4
    # a user changes cluster only when the new centre is this much closer (distance ratio)
    cluster_margin: float = 0.5
    # ... and at most once in this many days: behaviour windows move daily, a
    # behavioural segment should not (each move is two segment changes downstream)
    cluster_min_days: int = 30
    # churn tiers, value percentiles and alerts wait until a model learned this many labels
    # (an untrained model says 0.5 for everyone)
    min_learned: int = 500
    drift_policy: str = "keep"
    drift_delta: float = 0.002
    rolling_window: int = 1000
    value_reference: int = 5000
    snapshot_dir: Path = Path(".local/models")
    snapshot_interval_s: int = 300
    snapshot_keep: int = 5
    seed: int = 42

    @property
    def horizon_ms(self) -> int:
        return self.horizon_days * DAY_MS

    @property
    def debounce_ms(self) -> int:
        return self.debounce_s * 1000

    @property
    def max_staleness_ms(self) -> int:
        return self.max_staleness_s * 1000

    @property
    def snapshot_gap_ms(self) -> int:
        return self.snapshot_gap_s * 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ModelConfig:
        """Read and validate; every problem is reported at once in a :class:`ConfigError`."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def read(var: str, field: str, conv: Callable[[str], Any],
                 check: Callable[[Any], str | None]) -> None:
            raw = env.get(var)
            if raw is None or raw == "":
                return
            try:
                value = conv(raw.strip())
            except ValueError:
                problems.append(f"{var}={raw!r}: {check(None) or 'invalid value'}")
                return
            msg = check(value)
            if msg:
                problems.append(f"{var}={raw!r}: {msg}")
            else:
                values[field] = value

        def positive(v: Any) -> str | None:
            return "use a whole number > 0" if v is None or v <= 0 else None

        def non_negative(v: Any) -> str | None:
            return "use a whole number >= 0" if v is None or v < 0 else None

        def prob(v: Any) -> str | None:
            return "use a number between 0 and 1" if v is None or not 0 <= v <= 1 else None

        def one_of(options: tuple[str, ...]) -> Callable[[Any], str | None]:
            def check(v: Any) -> str | None:
                return None if v in options else f"use one of {', '.join(options)}"
            return check

        read("SEGSTREAM_MODELS_ENABLED", "enabled", _bool,
             lambda v: None if v is not None else "use true or false")
        read("SEGSTREAM_MODEL_NAME", "name", str,
             lambda v: None if v and v.replace("_", "").isalnum() else "use letters, digits, _")
        read("SEGSTREAM_CHURN_HORIZON_DAYS", "horizon_days", int, positive)
        read("SEGSTREAM_CHURN_TIER_HIGH", "tier_high", float, prob)
        read("SEGSTREAM_CHURN_TIER_MEDIUM", "tier_medium", float, prob)
        read("SEGSTREAM_CHURN_TIER_HYSTERESIS", "hysteresis", float, prob)
        read("SEGSTREAM_MODEL_DEBOUNCE_S", "debounce_s", int, non_negative)
        read("SEGSTREAM_MODEL_MAX_STALENESS_S", "max_staleness_s", int, positive)
        read("SEGSTREAM_MODEL_MATERIALITY", "materiality", float, prob)
        read("SEGSTREAM_MODEL_LABEL_GAP_S", "snapshot_gap_s", int, non_negative)
        read("SEGSTREAM_MODEL_EARLY_LABELS", "early_labels", _bool,
             lambda v: None if v is not None else "use true or false")
        read("SEGSTREAM_MODEL_SNAPSHOT_IDLE_DAYS", "snapshot_idle_days", int, positive)
        read("SEGSTREAM_MODEL_MAX_PENDING", "max_pending", int, positive)
        read("SEGSTREAM_MODEL_CLUSTERS", "clusters", int,
             lambda v: None if v is not None and 2 <= v <= 50 else "use 2..50")
        read("SEGSTREAM_MODEL_CLUSTER_ALGORITHM", "cluster_algorithm", str.lower,
             one_of(CLUSTER_ALGORITHMS))
        read("SEGSTREAM_MODEL_MIN_LEARNED", "min_learned", int, non_negative)
        read("SEGSTREAM_MODEL_CLUSTER_MIN_DAYS", "cluster_min_days", int, non_negative)
        read("SEGSTREAM_MODEL_CLUSTER_MARGIN", "cluster_margin", float, non_negative)
        read("SEGSTREAM_MODEL_CLUSTER_LEARN_EVERY", "cluster_learn_every", int, positive)
        read("SEGSTREAM_MODEL_DRIFT_POLICY", "drift_policy", str.lower, one_of(DRIFT_POLICIES))
        read("SEGSTREAM_MODEL_DRIFT_DELTA", "drift_delta", float,
             lambda v: None if v is not None and 0 < v < 1 else "use a number in (0, 1)")
        read("SEGSTREAM_MODEL_ROLLING_WINDOW", "rolling_window", int, positive)
        read("SEGSTREAM_MODEL_SNAPSHOT_DIR", "snapshot_dir", Path,
             lambda v: None if v is not None else "use a directory path")
        read("SEGSTREAM_MODEL_SNAPSHOT_INTERVAL_S", "snapshot_interval_s", int, positive)
        read("SEGSTREAM_MODEL_SNAPSHOT_KEEP", "snapshot_keep", int,
             lambda v: None if v is not None and v >= 2 else "keep at least 2 snapshots")
        read("SEGSTREAM_MODEL_SEED", "seed", int, non_negative)
        cfg = cls(**values)
        if not problems and cfg.tier_medium >= cfg.tier_high:
            problems.append("SEGSTREAM_CHURN_TIER_MEDIUM must be below SEGSTREAM_CHURN_TIER_HIGH")
        if not problems and cfg.hysteresis >= cfg.tier_medium:
            problems.append("SEGSTREAM_CHURN_TIER_HYSTERESIS must be below the medium tier")
        if problems:
            raise ConfigError("invalid model configuration:\n  " + "\n  ".join(problems))
        return cfg


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
