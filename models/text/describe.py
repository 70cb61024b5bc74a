"""Behavioural cluster profiles in words, for marketers.

A profile is ``{"cluster": int, "size": int, "share": float, "distinctive": [{"feature":
str, "value": float, "overall": float}]}``. :func:`template_description` always works;
:func:`llm_description` asks a language model through a ``complete(system, user)``
callable and falls back to the template when the answer is unusable.
:func:`profile_key` changes only when the profile shifts noticeably, so a cached
description is regenerated then and not on every small drift.

Examples
--------
>>> profile = {"cluster": 2, "size": 1204, "share": 0.12, "distinctive": [
...     {"feature": "spend_365d", "value": 840.0, "overall": 310.0},
...     {"feature": "logistics_complaints_90d", "value": 0.9, "overall": 0.2}]}
>>> for part in template_description(profile).split("; "):
...     print(part)
Cluster 2: 1,204 users (12% of all). Compared with all users: spend_365d much higher (840 vs 310)
logistics_complaints_90d much higher (0.9 vs 0.2).
>>> text = template_description(profile, {"spend_365d": "net spend in the last 365 days"})
>>> text.split("; ")[0].split(": ")[2]
'net spend in the last 365 days much higher (840 vs 310)'

"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from models.exceptions import ModelsError
from models.text.prompts import load_prompt

MAX_FEATURES = 5
MAX_CHARS = 600

Complete = Callable[[str, str], str]
"""``complete(system_prompt, user_message) -> answer text`` (an LLM call)."""


def _num(x: float) -> str:
    if x != x:  # NaN
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}".rstrip("0").rstrip(".")
    return f"{x:.2g}"


def _direction(value: float, overall: float) -> str:
    if overall == 0:
        return "higher" if value > 0 else "lower" if value < 0 else "the same"
    ratio = value / overall
    if ratio >= 1.5:
        return "much higher"
    if ratio > 1:
        return "higher"
    if ratio <= 0.67:
        return "much lower"
    return "lower" if ratio < 1 else "the same"


def _validate(profile: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    try:
        int(profile["cluster"])
        int(profile["size"])
        float(profile["share"])
        distinctive = list(profile.get("distinctive") or [])
        for d in distinctive:
            str(d["feature"])
            float(d["value"])
            float(d["overall"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelsError(f"cluster profile is malformed ({exc!r}); expected cluster, size, "
                          "share and distinctive [{feature, value, overall}]") from None
    return distinctive


def template_description(profile: Mapping[str, Any],
                         docs: Mapping[str, str] | None = None) -> str:
    """A plain description from the numbers alone (no model needed)."""
    distinctive = _validate(profile)
    head = (f"Cluster {int(profile['cluster'])}: {int(profile['size']):,} users "
            f"({float(profile['share']):.0%} of all).")
    parts = []
    for d in distinctive[:MAX_FEATURES]:
        name = (docs or {}).get(d["feature"], d["feature"])
        value, overall = float(d["value"]), float(d["overall"])
        parts.append(f"{name} {_direction(value, overall)} ({_num(value)} vs {_num(overall)})")
    if not parts:
        return f"{head} No feature stands out from the population."
    return f"{head} Compared with all users: {'; '.join(parts)}."


def llm_description(profile: Mapping[str, Any], complete: Complete,
                    docs: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(text, source)``: the model's paragraph (``source`` = prompt version) or, when
    the answer is empty, too long or the call fails with a :class:`ModelsError`, the
    template (``source`` = ``"template"``)."""
    distinctive = _validate(profile)
    prompt = load_prompt("segment-description")
    facts = {
        "size": int(profile["size"]), "share_of_users": round(float(profile["share"]), 3),
        "distinctive": [{"feature": (docs or {}).get(d["feature"], d["feature"]),
                         "group": d["value"], "all_users": d["overall"]}
                        for d in distinctive[:MAX_FEATURES]],
    }
    try:
        answer = complete(prompt.text, json.dumps(facts, ensure_ascii=False))
    except ModelsError:
        return template_description(profile, docs), "template"
    text = " ".join(answer.split()).strip().strip('"')
    if not text or len(text) > MAX_CHARS:
        return template_description(profile, docs), "template"
    return f"Cluster {int(profile['cluster'])}: {text}", prompt.version


def _coarse(x: float) -> float:
    """Two significant digits: the resolution at which a profile counts as changed."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, 1 - math.floor(math.log10(abs(x))))


def profile_key(profile: Mapping[str, Any]) -> str:
    """Stable key of a profile at two significant digits (a description cache key).

    >>> a = {"cluster": 1, "size": 1000, "share": 0.1,
    ...      "distinctive": [{"feature": "x", "value": 2.01, "overall": 1.0}]}
    >>> b = {**a, "size": 1004, "distinctive": [{"feature": "x", "value": 2.02, "overall": 1.0}]}
    >>> profile_key(a) == profile_key(b)
    True
    >>> profile_key(a) == profile_key({**a, "size": 1500})
    False
    """
    distinctive = _validate(profile)
    doc = [int(profile["cluster"]), _coarse(float(profile["size"])),
           _coarse(float(profile["share"])),
           [[d["feature"], _coarse(float(d["value"])), _coarse(float(d["overall"]))]
            for d in distinctive[:MAX_FEATURES]]]
    return hashlib.blake2b(json.dumps(doc).encode(), digest_size=12).hexdigest()
