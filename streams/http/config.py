"""Settings of the HTTP endpoint (probes and status page), read from ``SEGSTREAM_*``.

The listening address is the process's ``SEGSTREAM_METRICS_HOST``/``_PORT``
(:class:`streams.config.Settings`); these settings tune what the endpoint answers.

Examples
--------
>>> s = HttpSettings.from_env({"SEGSTREAM_STATUS_INTERVAL_S": "2"})
>>> s.status_interval_s, s.status_points
(2.0, 360)
>>> HttpSettings.from_env({"SEGSTREAM_READY_BROKER_TIMEOUT_S": "soon"})
Traceback (most recent call last):
...
streams.exceptions.ConfigError: invalid configuration:
  SEGSTREAM_READY_BROKER_TIMEOUT_S='soon': expected a number of seconds
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streams.exceptions import ConfigError

PREFIX = "SEGSTREAM_"


@dataclass(frozen=True)
class HttpSettings:
    """What the probes and the status page need beyond the listening address.

    Attributes
    ----------
    ready_broker_timeout_s
        ``/readyz`` fails once the broker has not answered for this long
        (``SEGSTREAM_READY_BROKER_TIMEOUT_S``). Longer than librdkafka's stats interval.
    live_stall_timeout_s
        ``/healthz`` fails once the consume loop has not gone round for this long outside
        a restore (``SEGSTREAM_LIVE_STALL_TIMEOUT_S``); 0 turns the check off. Keep it
        above ``max.poll.interval.ms`` so a slow batch is not mistaken for a hang.
    status_interval_s
        Seconds between two samples of the status page (``SEGSTREAM_STATUS_INTERVAL_S``).
    status_points
        Samples kept per series (``SEGSTREAM_STATUS_POINTS``): 360 at 5 s is 30 minutes.
    """

    ready_broker_timeout_s: float = 60.0
    live_stall_timeout_s: float = 600.0
    status_interval_s: float = 5.0
    status_points: int = 360

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HttpSettings:
        """Read and validate the variables; raise :class:`ConfigError` naming each fix."""
        problems: list[str] = []
        values: dict[str, float | int] = {}
        floats = {"READY_BROKER_TIMEOUT_S": "ready_broker_timeout_s",
                  "LIVE_STALL_TIMEOUT_S": "live_stall_timeout_s",
                  "STATUS_INTERVAL_S": "status_interval_s"}
        for var, name in floats.items():
            raw = env.get(PREFIX + var)
            if raw is None:
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                problems.append(f"{PREFIX}{var}={raw!r}: expected a number of seconds")
        raw = env.get(PREFIX + "STATUS_POINTS")
        if raw is not None:
            try:
                values["status_points"] = int(raw)
            except ValueError:
                problems.append(f"{PREFIX}STATUS_POINTS={raw!r}: expected an integer")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks; raise :class:`ConfigError` saying what to change."""
        p: list[str] = []
        if self.ready_broker_timeout_s <= 0:
            p.append("SEGSTREAM_READY_BROKER_TIMEOUT_S must be > 0")
        if self.live_stall_timeout_s < 0:
            p.append("SEGSTREAM_LIVE_STALL_TIMEOUT_S must be >= 0 (0 turns the check off)")
        if not 0.1 <= self.status_interval_s <= 3600:
            p.append("SEGSTREAM_STATUS_INTERVAL_S must be between 0.1 and 3600")
        if not 2 <= self.status_points <= 100_000:
            p.append("SEGSTREAM_STATUS_POINTS must be between 2 and 100000")
        if p:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(p))
