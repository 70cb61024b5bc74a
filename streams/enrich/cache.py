"""A bounded LRU cache with per-entry expiry, keyed by a hash of the review text.

Answers live long (the same text gets the same analysis); failures are cached briefly so a
text that keeps failing is not re-sent in a tight loop, yet is retried soon.

Examples
--------
>>> c = TTLCache(max_entries=2)
>>> c.put("a", 1, ttl_s=10, now=0)
>>> c.get("a", now=5), c.get("a", now=11)
(1, None)
>>> c.put("x", 1, 10, 0); c.put("y", 2, 10, 0); c.put("z", 3, 10, 0)
>>> c.get("x", now=1), len(c)
(None, 2)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


def text_key(text: str, lang: str | None, model: str, prompt_version: str) -> str:
    """Cache key: the answer depends on the text, its language, the model and the prompt.

    >>> text_key("好", "zh", "m", "p.v1") == text_key("好", "zh", "m", "p.v2")
    False
    """
    raw = "\x1f".join((model, prompt_version, lang or "", text))
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


class TTLCache(Generic[V]):
    """Least-recently-used eviction beyond ``max_entries``; entries expire after their ttl.

    Not thread-safe: the enrichment stage touches it from its main loop only.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: float) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if now >= expires:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: V, ttl_s: float, now: float) -> None:
        if self.max_entries <= 0 or ttl_s <= 0:
            return
        self._data[key] = (now + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
