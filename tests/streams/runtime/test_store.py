"""The RocksDB partition store: atomic state+offset writes that survive reopening."""

from __future__ import annotations

from streams.features.state import UserState
from streams.runtime.store import PartitionStore


def test_flush_persists_states_and_offsets_together(tmp_path):
    store = PartitionStore(tmp_path / "p0", cache_size=100)
    store.put("u1", UserState(first_ts=1, last_ts=2, events=2))
    store.put("u2", UserState(first_ts=5, last_ts=5, events=1))
    assert store.flush({"shop.clicks": 42, "shop.orders": 7}) == 2
    store.close()
    reopened = PartitionStore(tmp_path / "p0")
    assert reopened.offsets() == {"shop.clicks": 42, "shop.orders": 7}
    assert reopened.get("u1").events == 2 and reopened.get("nobody") is None
    assert sorted(u for u, _ in reopened.iter_states()) == ["u1", "u2"]
    reopened.close()


def test_unflushed_writes_are_not_persisted(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    store.put("u1", UserState(events=1))
    store.flush({"t": 1})
    store.put("u1", UserState(events=99))
    store.close()  # a crash before flush: the store keeps the last flushed batch
    reopened = PartitionStore(tmp_path / "p0")
    assert reopened.get("u1").events == 1 and reopened.offsets() == {"t": 1}
    reopened.close()


def test_delete_and_cache_eviction(tmp_path):
    store = PartitionStore(tmp_path / "p0", cache_size=100)
    for i in range(300):
        store.put(f"u{i}", UserState(events=i))
    store.flush({"t": 300})
    assert len(store._cache) == 100
    assert store.get("u5").events == 5  # evicted, read back from RocksDB
    store.delete("u5")
    assert store.get("u5") is None
    store.flush({"t": 301})
    store.close()
    reopened = PartitionStore(tmp_path / "p0")
    assert reopened.get("u5") is None and reopened.get("u6").events == 6
    reopened.close()
