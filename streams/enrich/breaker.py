"""Circuit breaker in front of the LLM endpoint.

After ``failures`` consecutive failed requests the circuit *opens*: no request is sent
and reviews get the local analysis at once. After ``reset_s`` one trial request is let
through (*half-open*); its success closes the circuit, its failure opens it again.

Examples
--------
>>> b = CircuitBreaker(failures=2, reset_s=30)
>>> b.record_failure(now=0); b.record_failure(now=1)
>>> b.state, b.allow(now=10)
('open', False)
>>> b.allow(now=31), b.allow(now=31)   # one trial only
(True, False)
>>> b.record_success(); b.state
'closed'
"""

from __future__ import annotations

import threading

STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self.state = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_out = False
        self._lock = threading.Lock()

    def allow(self, now: float) -> bool:
        """May a request go out now?"""
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open" and now - self._opened_at >= self.reset_s:
                self.state = "half_open"
                self._trial_out = False
            if self.state == "half_open" and not self._trial_out:
                self._trial_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.state = "closed"
            self._consecutive = 0
            self._trial_out = False

    def record_failure(self, now: float) -> None:
        with self._lock:
            self._consecutive += 1
            if self.state == "half_open" or self._consecutive >= self.failures:
                self.state = "open"
                self._opened_at = now
                self._trial_out = False
