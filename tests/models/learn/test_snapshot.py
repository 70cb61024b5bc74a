"""Snapshots: version, checksum, offsets; corrupt files are refused and the previous used."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from models.learn.config import ModelConfig
from models.learn.exceptions import SnapshotError
from models.learn.snapshot import load_newest_valid, read, save
from models.learn.suite import ModelSuite


def _trained(n: int = 50) -> ModelSuite:
    suite = ModelSuite(ModelConfig(name="t", clusters=3))
    suite.learn([([float(i % 7)] * 30, i % 2, float(i)) for i in range(n)])
    return suite


def test_round_trip_keeps_models_metrics_version_and_offsets(tmp_path: Path) -> None:
    suite = _trained()
    path = save(suite, tmp_path, {"shop.orders/1": 10})
    loaded, meta = read(path)
    assert meta["model_version"] == suite.model_version == loaded.model_version
    assert suite.model_version.startswith("t-1-")
    assert meta["offsets"] == {"shop.orders/1": 10} == loaded.offsets
    row = {"orders_lifetime": 1.0}
    assert loaded.churn.predict(row) == suite.churn.predict(row)
    assert loaded.report()["churn"] == suite.report()["churn"]


def test_corrupt_newest_is_refused_and_previous_loaded(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    suite = _trained()
    first = save(suite, tmp_path, {"p/0": 1})
    first_version = suite.model_version
    suite.learn([([1.0] * 30, 1, 5.0)])
    second = save(suite, tmp_path, {"p/0": 2})
    data = bytearray(second.read_bytes())
    data[-10] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        read(second)
    with caplog.at_level(logging.ERROR):
        loaded, meta = load_newest_valid(tmp_path) or (None, {})
    assert meta["path"] == str(first) and loaded is not None
    assert loaded.model_version == first_version
    assert "refusing model snapshot" in caplog.text and second.name in caplog.text


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = save(_trained(), tmp_path, {})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SnapshotError, match="truncated"):
        read(path)
    path.write_bytes(b"not a snapshot at all")
    with pytest.raises(SnapshotError, match="no snapshot header"):
        read(path)
    assert load_newest_valid(tmp_path) is None
    assert load_newest_valid(tmp_path / "missing") is None


def test_counter_increases_and_old_snapshots_are_pruned(tmp_path: Path) -> None:
    suite = _trained(5)
    paths = [save(suite, tmp_path, {"p/0": i}, keep=2) for i in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [paths[2].name, paths[3].name]
    restarted, meta = load_newest_valid(tmp_path) or (None, {})
    assert restarted is not None and meta["offsets"] == {"p/0": 3}
    assert restarted.model_version.startswith("t-4-")


def test_snapshot_written_before_the_compiled_kernels_loads_and_scores(tmp_path: Path
                                                                       ) -> None:
    """Snapshots of the previous version: a list as the value reference sample, no refit
    schedule in the k-means learner, no inverse of the stable cluster ids."""
    suite = _trained(600)
    features = {"orders_lifetime": 2.0, "recency_days": 3.0, "first_order_days": 40.0}
    for i in range(2500):  # past the k-means warm-up, so the clusters have centres
        suite.tick(f"u{i}", {**features, "clicks_30d": float(i % 13)}, i * 86_400_000, None)
    value, km = suite.value, suite.clusters.model
    percentile = value.percentile(5.0)
    value.__dict__["_ring"] = value._ring[:value._size].tolist()
    del value.__dict__["_size"]
    del km.__dict__["_next_refit"], km.__dict__["_refitted"]
    suite.clusters.ids.__dict__.pop("_inverse", None)
    loaded, _ = read(save(suite, tmp_path, {}))
    assert loaded.value.percentile(5.0) == percentile
    loaded.value.observe(1.0)
    assert loaded.clusters.model.centres is not None
    s = loaded.tick("new", features, 10**12, None)
    assert s.rescored and s.cluster >= 0 and 0.0 <= s.value_pct <= 1.0
