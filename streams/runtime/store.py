"""Per-partition RocksDB state store (rocksdict) with a bounded write-behind cache.

One store per input partition *number*: the input topics are co-partitioned by
``user_id``, so partition ``n`` of clicks, orders and reviews all hold the same users and
share one store. The store is a local, rebuildable copy of the partition's changelog
topic (see :mod:`streams.runtime.changelog`): every batch stages its writes
(:meth:`PartitionStore.stage`), the runner sends them to the changelog with the batch's
outputs, and only then are they written here together with a checkpoint: the changelog
offset they correspond to, the next input offsets, and the partition's watermark.

Besides user states the store keeps a timer index (``t:<due>:<user>``) of each user's
next time-based re-evaluation, written in the same batch as the state it derives from, so
it is restored with the state.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
from rocksdict import Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

from streams.features.state import UserState, decode_state, encode_state

log = logging.getLogger(__name__)

_USER = b"u:"
_OFFSET = b"o:"
_META = b"m:"
_TIMER = b"t:"
_CHECKPOINT = _META + b"checkpoint"


def memtable_budget(megabytes: int) -> WriteBufferManager:
    """One memtable budget for all the stores of a worker.

    Why: each RocksDB instance otherwise grows its own memtables to 64 MiB (and keeps an
    immutable one while it flushes), so a worker's resident memory scaled with the
    number of partitions it owns and with the state written: ~400 MiB of memtables at
    1M users. Shared, a store that writes much flushes earlier instead.
    """
    return WriteBufferManager(megabytes << 20, False)


def _timer_key(due: int, user_id: str) -> bytes:
    return _TIMER + b"%016d:" % due + user_id.encode()


def _parse_timer(key: bytes) -> tuple[int, str]:
    return int(key[2:18]), key[19:].decode()


class PartitionStore:
    """State of the users of one partition number.

    Parameters
    ----------
    path
        Directory of the RocksDB instance (created if missing).
    cache_size
        Users kept decoded in memory; clean entries beyond it are evicted at flush.

    Examples
    --------
    >>> import tempfile
    >>> s = PartitionStore(Path(tempfile.mkdtemp()))
    >>> s.put("u1", UserState(last_ts=5, timer_due=100))
    >>> [u for u, _ in s.stage()]
    ['u1']
    >>> s.flush({"clicks": 7}, changelog_next=1, watermark=5)
    1
    >>> s.offsets(), s.checkpoint()["changelog_next"], s.pop_due(100)
    ({'clicks': 7}, 1, ['u1'])
    >>> s.close()
    """

    def __init__(self, path: Path, cache_size: int = 50_000,
                 write_buffers: WriteBufferManager | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        if write_buffers is not None:
            # the worker's stores share one memtable budget (see memtable_budget)
            opts.set_write_buffer_manager(write_buffers)
        self.path = path
        self._db = Rdict(str(path), opts)
        self._write_opts = WriteOptions()
        self._cache: OrderedDict[str, UserState] = OrderedDict()
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        # timer_due as last written to RocksDB, for users loaded or written since open
        self._stored_due: dict[str, int] = {}
        self._staged: list[tuple[str, bytes | None]] = []
        # min-heap of timer keys (b't:<due, 16 digits>:<user>', ordered as (due, user)),
        # lazily invalidated; one bytes object per armed user keeps a million timers small
        self._timers: list[bytes] = []
        # Pushed since the last flush, and popped for firing: with ``_stored_due`` they
        # say when a put needs a new heap entry, without a per-user map of every timer
        # (a million users' timers must not cost a million dict entries on top).
        self._recent: dict[str, int] = {}
        self._fired: set[str] = set()
        self._checked_top: bytes | None = None
        self._checked_due = 0
        self.cache_size = cache_size
        self._load_timers()

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
        self._stored_due.setdefault(user_id, state.timer_due)
        return state

    def put(self, user_id: str, state: UserState) -> None:
        if user_id not in self._stored_due and user_id not in self._cache:
            self.get(user_id)  # learn the stored timer so it can be replaced
        self._cache[user_id] = state
        self._cache.move_to_end(user_id)
        self._dirty.add(user_id)
        self._deleted.discard(user_id)
        due = state.timer_due
        if due and self._recent.get(user_id) != due and (
                due != self._stored_due.get(user_id) or user_id in self._fired):
            self._recent[user_id] = due
            self._fired.discard(user_id)
            heapq.heappush(self._timers, _timer_key(due, user_id))

    def delete(self, user_id: str) -> None:
        if user_id not in self._stored_due:
            self.get(user_id)
        self._cache.pop(user_id, None)
        self._dirty.discard(user_id)
        self._deleted.add(user_id)

    # ------------------------------------------------------------------ timers
    def next_due(self) -> int | None:
        """The earliest armed timer (``None`` when none)."""
        timers = self._timers
        if timers and timers[0] is self._checked_top:
            # asked once per event: the top entry was validated already (a user's due
            # moving later leaves it stale, which only costs an empty pop_due)
            return self._checked_due
        while timers:
            due, user = _parse_timer(timers[0])
            if self._due_of(user) == due:
                self._checked_top, self._checked_due = timers[0], due
                return due
            heapq.heappop(timers)
        return None

    def pop_due(self, upto: int) -> list[str]:
        """Users whose timer is due at or before ``upto``, earliest first (ties by id).

        The timers stay armed in the state; processing the user re-arms or clears them.
        """
        out: list[str] = []
        seen: set[str] = set()
        bound = _timer_key(upto + 1, "")
        while self._timers and self._timers[0] < bound:
            due, user = _parse_timer(heapq.heappop(self._timers))
            if user not in seen and self._due_of(user) == due:
                out.append(user)
                seen.add(user)
                self._fired.add(user)  # its heap entry is gone: the next put re-arms
                if self._recent.get(user) == due:
                    del self._recent[user]
        return out

    def _due_of(self, user_id: str) -> int:
        state = self.get(user_id)
        return state.timer_due if state is not None else 0

    def _load_timers(self) -> None:
        for k, _ in self._scan(_TIMER):
            self._timers.append(k)
        heapq.heapify(self._timers)

    # ---------------------------------------------------------------- offsets
    def offsets(self) -> dict[str, int]:
        """Next input offset per topic whose effects this store holds."""
        return {k[len(_OFFSET):].decode(): int(v) for k, v in self._scan(_OFFSET)}

    def checkpoint(self) -> dict[str, int | str]:
        """``{changelog_next, watermark, written_at, owner}`` of the last flush ({} if none)."""
        raw = self._db.get(_CHECKPOINT)
        return orjson.loads(raw) if raw is not None else {}

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys (raw mode: bytes) starting with ``prefix``, in key order."""
        for k, v in self._db.items(from_key=prefix):
            key = cast(bytes, k)
            if not key.startswith(prefix):
                break
            yield key, cast(bytes, v)

    # ------------------------------------------------------------- the batch
    def stage(self) -> list[tuple[str, bytes | None]]:
        """Encode this batch's writes: ``(user_id, state bytes | None for deleted)``.

        The runner sends exactly these bytes to the changelog, then :meth:`flush` writes
        them here, so the local store and the changelog never disagree.
        """
        self._staged = [(u, encode_state(self._cache[u])) for u in sorted(self._dirty)]
        self._staged += [(u, None) for u in sorted(self._deleted)]
        return self._staged

    def flush(self, offsets: dict[str, int], changelog_next: int | None = None,
              watermark: int | None = None, owner: str = "") -> int:
        """Write the staged batch and its checkpoint atomically; return users written.

        1. stage every staged user state, deletion and timer change in one write batch,
        2. stage the checkpoint (next input offsets, changelog offset, watermark),
        3. write the batch (RocksDB WAL: survives a process crash),
        4. evict clean cache entries beyond ``cache_size``.
        """
        if not self._staged and (self._dirty or self._deleted):
            self.stage()
        wb = WriteBatch(raw_mode=True)
        for user_id, raw in self._staged:
            old_due = self._stored_due.get(user_id, 0)
            new_due = self._cache[user_id].timer_due if raw is not None else 0
            if old_due != new_due:
                if old_due:
                    wb.delete(_timer_key(old_due, user_id))
                if new_due:
                    wb.put(_timer_key(new_due, user_id), b"")
            if raw is None:
                wb.delete(_USER + user_id.encode())
                self._stored_due.pop(user_id, None)
            else:
                wb.put(_USER + user_id.encode(), raw)
                self._stored_due[user_id] = new_due
        for topic, offset in offsets.items():
            wb.put(_OFFSET + topic.encode(), str(offset).encode())
        if changelog_next is not None or watermark is not None:
            cp = self.checkpoint()
            if changelog_next is not None:
                cp["changelog_next"] = changelog_next
            if watermark is not None:
                cp["watermark"] = max(watermark, int(cp.get("watermark", 0)))
            cp["written_at"] = int(time.time() * 1000)
            if owner:
                cp["owner"] = owner
            wb.put(_CHECKPOINT, orjson.dumps(cp))
        self._db.write(wb, self._write_opts)
        written = len(self._staged)
        self._staged = []
        self._dirty.clear()
        self._deleted.clear()
        self._recent.clear()
        while len(self._cache) > self.cache_size:
            user, _ = self._cache.popitem(last=False)
            self._stored_due.pop(user, None)
        return written

    def discard(self) -> int:
        """Forget this batch's unflushed writes (after an aborted transaction).

        States are updated in place, so every dirty user is evicted and reloaded from
        RocksDB, which holds the last committed state.
        """
        n = len(self._dirty) + len(self._deleted)
        for user_id in self._dirty | self._deleted:
            self._cache.pop(user_id, None)
            self._stored_due.pop(user_id, None)
        self._dirty.clear()
        self._deleted.clear()
        self._staged = []
        self._timers = []
        self._recent.clear()
        self._fired.clear()
        self._load_timers()
        return n

    # ------------------------------------------------------------ restoring
    def restore(self, records: list[tuple[str, bytes | None]], changelog_next: int) -> None:
        """Apply changelog records (latest value per user, ``None`` = tombstone)."""
        for user_id, raw in records:
            if raw is None:
                self.delete(user_id)
            else:
                self.put(user_id, decode_state(raw))
        self.stage()
        self.flush({}, changelog_next=changelog_next)

    def wipe(self) -> None:
        """Delete every key (the store is rebuilt from the changelog)."""
        wb = WriteBatch(raw_mode=True)
        for k, _ in self._scan(b""):
            wb.delete(k)
        self._db.write(wb, self._write_opts)
        self._cache.clear()
        self._dirty.clear()
        self._deleted.clear()
        self._stored_due.clear()
        self._timers = []
        self._recent.clear()
        self._fired.clear()

    # ------------------------------------------------------------------ misc
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
                        "from the changelog and the input", self.path, len(self._dirty))
        self._db.close()
