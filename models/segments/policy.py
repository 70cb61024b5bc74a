"""Rule segments with hysteresis and a minimum dwell time, defined in YAML.

A segment has an ``enter`` condition, an ``exit`` condition and a ``min_dwell``.
A non-member joins when ``enter`` holds; a member leaves when ``exit`` holds. Choosing
an exit threshold below the enter threshold (hysteresis) plus the dwell time keeps users
from flapping at a boundary. Conditions are comparisons on feature names, combined with
``all``/``any`` (a plain list means ``all``)::

    vip:
      enter: {all: ["spend_365d >= 1000", "orders_365d >= 3"]}
      exit: ["spend_365d < 700"]
      min_dwell: 7d

Evaluation is pure: ``evaluate(membership, features, as_of)`` returns the changes and
mutates nothing but the membership map it was given.

Examples
--------
>>> p = SegmentPolicy.from_dict({"version": "t1", "segments": {"big": {
...     "enter": ["spend_365d >= 100"], "exit": ["spend_365d < 50"], "min_dwell": "0s"}}})
>>> member, exited = {}, {}
>>> [(c.segment, c.change) for c in p.evaluate(member, exited, {"spend_365d": 120.0}, 0)]
[('big', 'entered')]
>>> p.evaluate(member, exited, {"spend_365d": 80.0}, 1)   # between thresholds: stays
[]
>>> [(c.segment, c.change) for c in p.evaluate(member, exited, {"spend_365d": 10.0}, 2)]
[('big', 'exited')]
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from models.exceptions import PolicyError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_COND = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)?\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


@dataclass(frozen=True)
class Reason:
    """One condition that held: the feature, its value, the operator and the threshold."""

    feature: str
    op: str
    value: float
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "op": self.op, "value": self.value,
                "threshold": self.threshold}


@dataclass(frozen=True)
class Comparison:
    feature: str
    op: str
    threshold: float

    def check(self, features: Mapping[str, float | None], out: list[Reason]) -> bool:
        value = features.get(self.feature)
        if value is None or not OPS[self.op](value, self.threshold):
            return False
        out.append(Reason(self.feature, self.op, round(float(value), 6), self.threshold))
        return True


@dataclass(frozen=True)
class Combination:
    mode: str  # "all" | "any"
    parts: tuple[Comparison | Combination, ...]

    def check(self, features: Mapping[str, float | None], out: list[Reason]) -> bool:
        mark = len(out)
        if self.mode == "all":
            for part in self.parts:
                if not part.check(features, out):
                    del out[mark:]
                    return False
            return True
        held = False
        for part in self.parts:
            held = part.check(features, out) or held
        return held


Condition = Comparison | Combination


@dataclass(frozen=True)
class SegmentChange:
    segment: str
    change: str  # "entered" | "exited"
    reasons: tuple[Reason, ...]
    since: int | None = None  # when the user had entered (for exits)


@dataclass(frozen=True)
class SegmentRule:
    name: str
    enter: Condition
    exit: Condition
    min_dwell_ms: int
    description: str = ""

    def __post_init__(self) -> None:
        # Compiled predicates for the per-event path (closures, no generator frames).
        object.__setattr__(self, "enters", compile_condition(self.enter))
        object.__setattr__(self, "exits", compile_condition(self.exit))

    enters: Callable[[Mapping[str, float | None]], bool] = field(init=False, repr=False,
                                                                  compare=False)
    exits: Callable[[Mapping[str, float | None]], bool] = field(init=False, repr=False,
                                                                 compare=False)


Predicate = Callable[[Mapping[str, float | None]], bool]


def compile_condition(cond: Condition) -> Predicate:
    """Turn a condition tree into nested closures: several times faster than walking it."""
    if isinstance(cond, Comparison):
        feature, threshold, op = cond.feature, cond.threshold, OPS[cond.op]

        def compare(f: Mapping[str, float | None]) -> bool:
            v = f.get(feature)
            return v is not None and op(v, threshold)

        return compare
    parts = tuple(compile_condition(p) for p in cond.parts)
    if len(parts) == 1:
        return parts[0]
    if cond.mode == "all":
        if len(parts) == 2:
            a, b = parts
            return lambda f: a(f) and b(f)

        def all_of(f: Mapping[str, float | None]) -> bool:
            for p in parts:  # noqa: SIM110 - a loop avoids a generator frame per event
                if not p(f):
                    return False
            return True

        return all_of
    if len(parts) == 2:
        a, b = parts
        return lambda f: a(f) or b(f)

    def any_of(f: Mapping[str, float | None]) -> bool:
        for p in parts:  # noqa: SIM110 - a loop avoids a generator frame per event
            if p(f):
                return True
        return False

    return any_of


class SegmentPolicy:
    """An ordered set of :class:`SegmentRule` plus a version stamped on every change."""

    def __init__(self, version: str, rules: Iterable[SegmentRule]) -> None:
        self.version = version
        self.rules = tuple(rules)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: Path | None = None, feature_names: Iterable[str] | None = None
             ) -> SegmentPolicy:
        """Load a YAML policy file (the packaged default when ``path`` is None)."""
        if path is None:
            text = resources.files("models.segments").joinpath("default.yaml").read_text()
            where = "packaged default.yaml"
        else:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise PolicyError(f"cannot read segment file {path}: {exc}") from None
            where = str(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{where}: not valid YAML: {exc}") from None
        return cls.from_dict(data, feature_names=feature_names, where=where, text=text)

    @classmethod
    def from_dict(cls, data: Any, feature_names: Iterable[str] | None = None,
                  where: str = "policy", text: str | None = None) -> SegmentPolicy:
        known = set(feature_names) if feature_names is not None else None
        if not isinstance(data, dict) or not isinstance(data.get("segments"), dict):
            raise PolicyError(f"{where}: expected a mapping with a 'segments' mapping")
        problems: list[str] = []
        rules: list[SegmentRule] = []
        for name, spec in data["segments"].items():
            ctx = f"{where}: segment {name!r}"
            if not isinstance(name, str) or not NAME.match(name):
                problems.append(f"{ctx}: name must be lower_snake_case")
                continue
            if not isinstance(spec, dict):
                problems.append(f"{ctx}: expected a mapping with enter/exit")
                continue
            unknown_keys = set(spec) - {"enter", "exit", "min_dwell", "description"}
            if unknown_keys:
                problems.append(f"{ctx}: unknown keys {sorted(unknown_keys)}")
            try:
                enter = _parse(spec.get("enter"), known, f"{ctx}.enter")
                exit_ = _parse(spec.get("exit"), known, f"{ctx}.exit")
                dwell = parse_duration(spec.get("min_dwell", 0), f"{ctx}.min_dwell")
            except PolicyError as exc:
                problems.append(str(exc))
                continue
            rules.append(SegmentRule(name, enter, exit_, dwell, str(spec.get("description", ""))))
        if problems:
            raise PolicyError("invalid segment policy:\n  " + "\n  ".join(problems))
        version = data.get("version")
        if version is None:
            digest = hashlib.sha256((text or repr(data)).encode()).hexdigest()[:12]
            version = f"sha256:{digest}"
        return cls(str(version), rules)

    # --------------------------------------------------------------- evaluating
    def evaluate(
        self,
        members: dict[str, list[int]],
        exited: dict[str, int],
        features: Mapping[str, float | None],
        as_of: int,
    ) -> list[SegmentChange]:
        """Apply every rule; update ``members``/``exited`` in place; return the changes.

        ``members`` maps a segment to ``[since_ts, last_change_ts]``; ``exited`` maps a
        segment to the time the user last left it. Dwell times count in event time.
        """
        changes: list[SegmentChange] = []
        for rule in self.rules:
            current = members.get(rule.name)
            if current is None:
                left = exited.get(rule.name)
                if left is not None and as_of - left < rule.min_dwell_ms:
                    continue
                if rule.enters(features):
                    members[rule.name] = [as_of, as_of]
                    exited.pop(rule.name, None)
                    changes.append(SegmentChange(rule.name, "entered",
                                                 _reasons(rule.enter, features)))
            else:
                if as_of - current[0] < rule.min_dwell_ms:
                    continue
                if rule.exits(features):
                    del members[rule.name]
                    exited[rule.name] = as_of
                    changes.append(SegmentChange(rule.name, "exited",
                                                 _reasons(rule.exit, features),
                                                 since=current[0]))
        return changes

    def describe(self) -> list[dict[str, Any]]:
        return [{"segment": r.name, "description": r.description,
                 "min_dwell_ms": r.min_dwell_ms} for r in self.rules]


def _reasons(cond: Condition, features: Mapping[str, float | None]) -> tuple[Reason, ...]:
    # Only for decisions that change membership, so the allocation stays off the hot path.
    out: list[Reason] = []
    cond.check(features, out)
    return tuple(out)


def parse_duration(value: Any, ctx: str = "duration") -> int:
    """``"7d"`` -> milliseconds. Plain numbers are seconds.

    >>> parse_duration("36h")
    129600000
    """
    if isinstance(value, bool):
        raise PolicyError(f"{ctx}: expected a duration like 30m, 12h or 7d")
    if isinstance(value, int | float):
        return int(value * 1000)
    m = _DURATION.match(str(value))
    if not m:
        raise PolicyError(f"{ctx}: {value!r} is not a duration like 30m, 12h or 7d")
    return int(m.group(1)) * _UNIT_MS[m.group(2) or "s"]


def _parse(spec: Any, known: set[str] | None, ctx: str) -> Condition:
    if spec is None:
        raise PolicyError(f"{ctx}: missing (a condition such as 'orders_365d >= 3')")
    if isinstance(spec, str):
        m = _COND.match(spec)
        if not m:
            raise PolicyError(f"{ctx}: {spec!r} is not 'feature OP number' "
                              f"(OP one of {', '.join(OPS)})")
        feature, op, num = m.groups()
        if known is not None and feature not in known:
            raise PolicyError(f"{ctx}: unknown feature {feature!r}; known features: "
                              f"{', '.join(sorted(known))}")
        return Comparison(feature, op, float(num))
    if isinstance(spec, list):
        if not spec:
            raise PolicyError(f"{ctx}: empty condition list")
        return Combination("all", tuple(_parse(s, known, ctx) for s in spec))
    if isinstance(spec, dict) and len(spec) == 1:
        (mode, parts), = spec.items()
        if mode in ("all", "any") and isinstance(parts, list) and parts:
            return Combination(mode, tuple(_parse(s, known, f"{ctx}.{mode}") for s in parts))
    raise PolicyError(f"{ctx}: expected a condition string, a list, or {{all|any: [...]}}")
