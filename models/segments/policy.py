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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from models.exceptions import PolicyError

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_FEATURE = re.compile(r"^[a-z][a-z0-9_]*$")
_COND = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)?\s*$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


class Reason(NamedTuple):
    """One condition that held: the feature, its value, the operator and the threshold.

    A named tuple, as is :class:`SegmentChange`: every segment change builds a few, and a
    frozen dataclass pays an ``object.__setattr__`` per field.
    """

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


class SegmentChange(NamedTuple):
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


def condition_source(cond: Condition) -> str:
    """A Python expression for ``cond`` over ``g = features.get``.

    Safe to compile: feature names match ``[a-z][a-z0-9_]*``, operators come from
    :data:`OPS` and thresholds are floats, all checked when the policy was parsed.

    >>> condition_source(Combination("any", (Comparison("a", ">=", 1.0),
    ...                                       Comparison("b", "<", 2.5))))
    "((v := g('a')) is not None and v >= 1.0 or (v := g('b')) is not None and v < 2.5)"
    """
    if isinstance(cond, Comparison):
        if cond.op not in OPS or not _FEATURE.match(cond.feature):
            raise PolicyError(f"cannot compile condition {cond!r}")
        return (f"(v := g({cond.feature!r})) is not None and v {cond.op} "
                f"{float(cond.threshold)!r}")
    parts = [condition_source(p) for p in cond.parts]
    if len(parts) == 1:
        return parts[0]
    if cond.mode == "all":
        return "(" + " and ".join(f"({p})" for p in parts) + ")"
    return "(" + " or ".join(parts) + ")"


Decider = Callable[[dict[str, list[int]], dict[str, int], Mapping[str, float | None], int],
                   list[int]]


def compile_policy(rules: tuple[SegmentRule, ...]) -> Decider:
    """Generate one function deciding every rule for a user.

    Why: most evaluations change nothing, and walking condition trees (or calling one
    closure per comparison) cost about 20 Python calls per event. The generated function
    is a single frame of inline dict lookups and comparisons; it returns the indexes of
    the rules whose membership changes (``i`` enters, ``~i`` exits), so that the rare
    change is described by the condition trees, which also collect the reasons.
    """
    lines = ["def decide(members, exited, f, as_of):", "    g = f.get", "    hits = []"]
    for i, rule in enumerate(rules):
        dwell = int(rule.min_dwell_ms)
        lines += [
            f"    cur = members.get({rule.name!r})",
            "    if cur is None:",
            f"        left = exited.get({rule.name!r})",
            f"        if (left is None or as_of - left >= {dwell}) and "
            f"({condition_source(rule.enter)}):",
            f"            hits.append({i})",
            f"    elif as_of - cur[0] >= {dwell} and ({condition_source(rule.exit)}):",
            f"        hits.append({~i})",
        ]
    lines.append("    return hits")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<segment policy>", "exec"), namespace)
    decide: Decider = namespace["decide"]
    return decide


class SegmentPolicy:
    """An ordered set of :class:`SegmentRule` plus a version stamped on every change."""

    def __init__(self, version: str, rules: Iterable[SegmentRule]) -> None:
        self.version = version
        self.rules = tuple(rules)
        self._decide = compile_policy(self.rules)

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
        hits = self._decide(members, exited, features, as_of)
        if not hits:
            return []
        changes: list[SegmentChange] = []
        for hit in hits:
            if hit >= 0:
                rule = self.rules[hit]
                members[rule.name] = [as_of, as_of]
                exited.pop(rule.name, None)
                changes.append(SegmentChange(rule.name, "entered",
                                             _reasons(rule.enter, features)))
            else:
                rule = self.rules[~hit]
                since = members.pop(rule.name)[0]
                exited[rule.name] = as_of
                changes.append(SegmentChange(rule.name, "exited",
                                             _reasons(rule.exit, features), since=since))
        return changes

    def features(self) -> set[str]:
        """The feature names the rules read (what a caller must keep up to date)."""
        out: set[str] = set()

        def walk(cond: Condition) -> None:
            if isinstance(cond, Comparison):
                out.add(cond.feature)
            else:
                for part in cond.parts:
                    walk(part)

        for rule in self.rules:
            walk(rule.enter)
            walk(rule.exit)
        return out

    def split(self, names: Iterable[str]) -> tuple[SegmentPolicy, SegmentPolicy]:
        """``(rules reading none of names, rules reading any of them)``, same version.

        Why: with the models in a stage of their own, the segments on model scores are
        decided where the scores are; the others stay with the event worker.

        >>> p = SegmentPolicy.from_dict({"version": "v", "segments": {
        ...     "a": {"enter": ["x >= 1"], "exit": ["x < 1"]},
        ...     "b": {"enter": ["x >= 1", "score >= 0.5"], "exit": ["score < 0.4"]}}})
        >>> [[r.name for r in q.rules] for q in p.split({"score"})]
        [['a'], ['b']]
        """
        wanted = set(names)
        reads = [bool(SegmentPolicy(self.version, (r,)).features() & wanted)
                 for r in self.rules]
        return (SegmentPolicy(self.version, (r for r, m in zip(self.rules, reads, strict=True)
                                             if not m)),
                SegmentPolicy(self.version, (r for r, m in zip(self.rules, reads, strict=True)
                                             if m)))

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
