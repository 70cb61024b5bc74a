"""Per-partition RocksDB state store (rocksdict) with a bounded write-behind cache.

One store per input partition *number*: the input topics are co-partitioned by
``user_id``, so partition ``n`` of clicks, orders and reviews all hold the same users and
share one store. Besides user states the store keeps, in the same atomic write batch,
the next input offset of every topic-partition whose effects it contains. That makes
the store self-describing: after a crash the runner resumes from the store's offsets,
so no event is applied twice to the state even when the Kafka commit was lost.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from streams.features.state import UserState, decode_state, encode_state

log = logging.getLogger(__name__)

_USER = b"u:"
_OFFSET = b"o:"
_META = b"m:"


class PartitionStore:
    """State of the users of one partition number.

    Parameters
    ----------
    path
        Directory of the RocksDB instance (created if missing).
    cache_size
        Users kept decoded in memory; clean entries beyond it are evicted at flush.
    """

    def __init__(self, path: Path, cache_size: int = 50_000) -> None:
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.path = path
        self._db = Rdict(str(path), opts)
        self._write_opts = WriteOptions()
        self._cache: OrderedDict[str, UserState] = OrderedDict()
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self.cache_size = cache_size

    # -------------------------------------------------------------- user state
    def get(self, user_id: str) -> UserState | None:
        state = self._cache.get(user_id)
        if state is not None:
            self._cache.move_to_end(user_id)
            return state
        if user_id in self._deleted:
            return None
        raw = self._db.get(_USER + user_id.encode())
        if raw is None:
            return None
        state = decode_state(raw)
        self._cache[user_id] = state
        return state

    def put(self, user_id: str, state: UserState) -> None:
        self._cache[user_id] = state
        self._cache.move_to_end(user_id)
        self._dirty.add(user_id)
        self._deleted.discard(user_id)

    def delete(self, user_id: str) -> None:
        self._cache.pop(user_id, None)
        self._dirty.discard(user_id)
        self._deleted.add(user_id)

    # ---------------------------------------------------------------- offsets
    def offsets(self) -> dict[str, int]:
        """Next input offset per topic whose effects this store holds."""
        return {k[len(_OFFSET):].decode(): int(v) for k, v in self._scan(_OFFSET)}

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys (raw mode: bytes) starting with ``prefix``, in key order."""
        for k, v in self._db.items(from_key=prefix):
            key = cast(bytes, k)
            if not key.startswith(prefix):
                break
            yield key, cast(bytes, v)

    def flush(self, offsets: dict[str, int]) -> int:
        """Write dirty states and ``offsets`` atomically; return the number of users written.

        1. stage every dirty user state and deletion in one write batch,
        2. stage the next input offsets in the same batch,
        3. write the batch (RocksDB WAL: survives a process crash),
        4. evict clean cache entries beyond ``cache_size``.
        """
        wb = WriteBatch(raw_mode=True)
        for user_id in self._dirty:
            wb.put(_USER + user_id.encode(), encode_state(self._cache[user_id]))
        for user_id in self._deleted:
            wb.delete(_USER + user_id.encode())
        for topic, offset in offsets.items():
            wb.put(_OFFSET + topic.encode(), str(offset).encode())
        self._db.write(wb, self._write_opts)
        written = len(self._dirty)
        self._dirty.clear()
        self._deleted.clear()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return written

    def users(self) -> int:
        """Approximate number of users stored (RocksDB estimate)."""
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    def iter_states(self) -> list[tuple[str, UserState]]:
        """Every stored user with its state (for snapshots and tests; not the hot path)."""
        out = []
        for k, v in self._scan(_USER):
            user = k[len(_USER):].decode()
            out.append((user, self._cache.get(user) or decode_state(v)))
        return out

    def close(self) -> None:
        if self._dirty or self._deleted:
            log.warning("closing store %s with %d unflushed users; they will be rebuilt "
                        "from the input", self.path, len(self._dirty))
        self._db.close()
