"""Token budget per clock hour and per UTC day, with the money it cost.

Before a request the stage asks whether its estimated tokens still fit; after it, the
real usage the endpoint reported is charged. An exhausted budget sends reviews to the
local analyzer until the next hour or day starts.

Examples
--------
>>> b = TokenBudget(per_hour=1000, per_day=0, cost_per_1k_input=0.5, cost_per_1k_output=2.0)
>>> b.allows(800, now=0)
True
>>> b.charge(600, 200, now=0)
0.7
>>> b.allows(300, now=10), b.allows(300, now=3600)
(False, True)
"""

from __future__ import annotations

import threading


class TokenBudget:
    """``per_hour`` / ``per_day`` of 0 mean unlimited."""

    def __init__(self, per_hour: int, per_day: int, cost_per_1k_input: float = 0.0,
                 cost_per_1k_output: float = 0.0) -> None:
        self.per_hour = per_hour
        self.per_day = per_day
        self.cost_in = cost_per_1k_input
        self.cost_out = cost_per_1k_output
        self._lock = threading.Lock()
        self._hour = self._day = -1
        self._used_hour = self._used_day = 0
        self.total_cost = 0.0
        self.total_tokens = 0

    def _roll(self, now: float) -> None:
        hour, day = int(now // 3600), int(now // 86_400)
        if hour != self._hour:
            self._hour, self._used_hour = hour, 0
        if day != self._day:
            self._day, self._used_day = day, 0

    def allows(self, tokens: int, now: float) -> bool:
        """Whether ``tokens`` more fit in this hour's and this day's budget."""
        with self._lock:
            self._roll(now)
            if self.per_hour and self._used_hour + tokens > self.per_hour:
                return False
            return not (self.per_day and self._used_day + tokens > self.per_day)

    def charge(self, prompt_tokens: int, completion_tokens: int, now: float) -> float:
        """Record real usage; return its cost."""
        tokens = prompt_tokens + completion_tokens
        cost = round(prompt_tokens / 1000 * self.cost_in
                     + completion_tokens / 1000 * self.cost_out, 6)
        with self._lock:
            self._roll(now)
            self._used_hour += tokens
            self._used_day += tokens
            self.total_tokens += tokens
            self.total_cost += cost
        return cost


def estimate_tokens(texts: list[str], prompt_chars: int) -> int:
    """A conservative token estimate: one per CJK character, one per 3 other characters,
    plus about 60 answer tokens per review.

    >>> estimate_tokens(["好吃", "tasty food"], prompt_chars=30)
    135
    """
    chars = prompt_chars + sum(len(t) for t in texts)
    cjk = sum(1 for t in texts for ch in t if "\u4e00" <= ch <= "\u9fff")
    return cjk + (chars - cjk) // 3 + 60 * len(texts)
