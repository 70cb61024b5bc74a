from pathlib import Path

from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from models.campaigns import CampaignBook
from streams.actions.config import ActionsConfig
from streams.actions.loop import ActionLoop, Batch, Tables
from streams.metrics import ActionsMetrics

TOKEN = {"SEGSTREAM_ACTIONS_API_TOKEN": "s3cret-token-0123456789"}


def _loop(tmp_path: Path, tables: Tables, **env: str) -> ActionLoop:
    config = ActionsConfig.from_env({**TOKEN, "SEGSTREAM_ACTIONS_STATE_DIR": str(tmp_path),
                                     "SEGSTREAM_ACTIONS_APP_ID": "app", **env})
    return ActionLoop(config, CampaignBook.load(), ActionsMetrics(CollectorRegistry()), tables)


def test_the_transactional_id_survives_a_restart_and_differs_per_state_dir(tmp_path: Path):
    first = _loop(tmp_path / "a", Tables())
    again = _loop(tmp_path / "a", Tables())
    other = _loop(tmp_path / "b", Tables())
    assert first.transactional_id == again.transactional_id
    assert first.transactional_id.startswith("app-") and first.transactional_id != \
        other.transactional_id
    assert first.eos and not _loop(tmp_path / "c", Tables(),
                                   SEGSTREAM_ACTIONS_GUARANTEE="at_least_once").eos
    assert first.changelog == {"users": "app-users-changelog",
                               "budgets": "app-budgets-changelog",
                               "churn": "app-churn-changelog"}


def test_revoked_partitions_drop_their_state_and_lookups_span_partitions(tmp_path: Path):
    tables = Tables()
    loop = _loop(tmp_path, tables)
    tables.data["users"] = {0: {b"u0": b"a"}, 1: {b"u1": b"b"}}
    tables.data["budgets"] = {0: {b"k|1|0": b"3"}, 1: {b"k|1|1": b"4"}}
    tables.data["churn"] = {1: {b"u1": b"c"}}
    assert tables.user(b"u0") == b"a" and tables.user(b"u1") == b"b"
    assert tables.user(b"nobody") is None
    loop._on_revoke(None, [TopicPartition("segments.changes", 1)])  # type: ignore[arg-type]
    assert tables.user(b"u1") is None and tables.user(b"u0") == b"a"
    assert 1 not in tables.data["budgets"] and tables.data["churn"] == {1: {b"u1": b"c"}}


def test_an_uncommitted_batch_leaves_the_committed_state_alone():
    tables = Tables()
    batch = Batch(tables)
    batch.put("users", 2, b"u", b"new")
    assert batch.get("users", 2, b"u") == b"new" and tables.user(b"u") is None
    batch.apply()
    assert tables.user(b"u") == b"new"
