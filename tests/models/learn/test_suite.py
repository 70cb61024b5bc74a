"""The suite as the worker uses it: debounced ticks, tiers, alerts, metrics, CLI report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from models.learn.alerts import churn_alert
from models.learn.churn import tier_of
from models.learn.cli import models
from models.learn.config import ModelConfig
from models.learn.inputs import MODEL_FEATURES
from models.learn.snapshot import save
from models.learn.suite import ModelSuite
from streams.metrics import ModelMetrics

HOUR = 3_600_000
I_REC = MODEL_FEATURES.index("recency_days")
I_LIFE = MODEL_FEATURES.index("first_order_days")
I_ORDERS = MODEL_FEATURES.index("orders_lifetime")


def _user(recency: float) -> dict[str, float]:
    return {"recency_days": recency, "first_order_days": recency + 10.0,
            "orders_lifetime": 1.0}


def _suite() -> ModelSuite:
    return ModelSuite(replace(ModelConfig(), clusters=2, debounce_s=3600,
                              max_staleness_s=86_400, materiality=0.1))


def _train(suite: ModelSuite, n: int = 400) -> None:
    ex = []
    for i in range(n):
        x: list[float | None] = [0.0] * len(MODEL_FEATURES)
        rec = 300.0 if i % 2 else 1.0
        x[I_REC], x[I_LIFE], x[I_ORDERS] = rec, rec + 10.0, 1.0
        ex.append((x, i % 2, 0.0 if i % 2 else 80.0))
    for _ in range(5):
        suite.learn(ex)


def test_debounce_and_materiality() -> None:
    suite = _suite()
    f = {"orders_lifetime": 2.0, "recency_days": 3.0}
    s = suite.tick("u", f, 0, None)
    assert s.rescored
    assert not suite.tick("u", {**f, "orders_lifetime": 5.0}, HOUR - 1, s.memo).rescored
    assert not suite.tick("u", {**f, "recency_days": 3.01}, 2 * HOUR, s.memo).rescored
    assert suite.tick("u", {**f, "orders_lifetime": 5.0}, 2 * HOUR, s.memo).rescored
    assert suite.tick("u", f, 25 * HOUR, s.memo).rescored  # stale
    assert suite.scored["churn"] == 3


def test_time_alone_rescores_only_a_stale_score() -> None:
    suite = ModelSuite(replace(ModelConfig(), clusters=2, debounce_s=3600,
                               max_staleness_s=3 * 86_400, materiality=0.1))
    f = {"orders_lifetime": 2.0, "recency_days": 3.0, "clicks_24h": 9.0}
    s = suite.tick("u", f, 0, None)
    # the day window emptied: a material change, but no new behaviour
    idle = {**f, "clicks_24h": 0.0, "recency_days": 4.0}
    assert not suite.tick("u", idle, 24 * HOUR, s.memo, behaviour=False).rescored
    assert suite.tick("u", idle, 24 * HOUR, s.memo).rescored  # the same change on an event
    assert suite.tick("u", idle, 72 * HOUR, s.memo, behaviour=False).rescored  # stale


def test_tiers_have_hysteresis() -> None:
    kw = {"high": 0.7, "medium": 0.4, "hysteresis": 0.05}
    seq, tier = [], None
    for p in (0.72, 0.68, 0.66, 0.5, 0.38, 0.34, 0.41):
        tier = tier_of(p, tier, **kw)
        seq.append(tier)
    assert seq == ["high", "high", "high", "medium", "medium", "low", "medium"]


def test_entering_high_tier_carries_top_features_for_the_alert() -> None:
    suite = _suite()
    _train(suite)
    f = _user(300.0)
    s = suite.tick("u", f, 0, None)
    assert s.churn >= 0.7 and s.churn_tier == "high" and s.entered_high
    top = {t["feature"]: t["value"] for t in suite.top_features(s)}
    assert top.get("recency_days", 300.0) == 300.0
    assert set(top) & {"recency_days", "recency_share"}, top
    alert = churn_alert("u", 0, s.churn, s.previous_tier, suite.top_features(s),
                        suite.model_version)
    assert alert["tier"] == "high" and alert["previous_tier"] is None
    assert alert["top_features"][0]["contribution"] > 0
    assert set(s.as_dict()) == {"churn", "churn_tier", "value", "value_pct", "cluster"}
    again = suite.tick("u", f, 30 * HOUR, s.memo)
    assert again.rescored and not again.entered_high


def test_value_ranks_buyers_above_lapsed_users() -> None:
    suite = _suite()
    _train(suite)
    buyer = suite.tick("a", _user(1.0), 0, None)
    lapsed = suite.tick("b", _user(300.0), 0, None)
    assert buyer.value > lapsed.value and buyer.value_pct > lapsed.value_pct


def test_prequential_metrics_reach_prometheus() -> None:
    suite = _suite()
    _train(suite)
    suite.tick("u", {"recency_days": 1.0}, 0, None)
    reg = CollectorRegistry()
    m = ModelMetrics(reg)
    m.refresh(suite, snapshot_created=100.0, snapshot_bytes=1234, now=160.0)
    m.refresh(suite)
    get = reg.get_sample_value
    assert (get("segstream_model_auc", {"model": "churn", "window": "overall"}) or 0) > 0.9
    assert get("segstream_model_mae", {"model": "value", "window": "rolling"}) is not None
    assert get("segstream_model_learned_total", {"model": "churn"}) == 2000
    assert get("segstream_model_scored_total", {"model": "churn"}) == 1
    assert (get("segstream_model_confusion",
                {"model": "churn", "actual": "1", "predicted": "1"}) or 0) > 0
    assert get("segstream_model_snapshot_age_seconds") == 60.0
    assert get("segstream_model_snapshot_bytes") == 1234


def test_cli_report_and_clusters(tmp_path: Path) -> None:
    suite = _suite()
    _train(suite)
    # enough scorings to get past the clusters' warm-up (no cluster is named before it)
    for i in range(2_400):
        suite.tick(f"u{i}", {"recency_days": float(i % 40 * 5), "orders_lifetime": 1.0 + i % 3},
                   0, None)
    save(suite, tmp_path, {"shop.orders/0": 7})
    out = CliRunner().invoke(models, ["report", "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert suite.model_version in out.output and "confusion" in out.output
    assert "auc" in out.output and "clusters" in out.output and "users" in out.output
    out = CliRunner().invoke(models, ["clusters", "--dir", str(tmp_path)])
    assert out.exit_code == 0 and "overall" in out.output
    out = CliRunner().invoke(models, ["report", "--dir", str(tmp_path / "none")])
    assert out.exit_code != 0 and "no valid model snapshot" in out.output


def test_alert_contributions_from_folded_weights_equal_the_scaled_model() -> None:
    from models.learn.inputs import compact, transform, transform_values

    suite = _suite()
    _train(suite)
    for recency in (0.0, 3.0, 45.0, 300.0):
        x = compact(_user(recency))
        # every positive term (the toy model ties some, and ties may order either way)
        fast = {t["feature"]: t["contribution"]
                for t in suite.churn.contributions_values(transform_values(x), top=99)}
        slow = {t["feature"]: t["contribution"]
                for t in suite.churn.contributions(transform(x), top=99)}
        assert fast.keys() == slow.keys()
        assert all(abs(fast[k] - slow[k]) <= 2e-4 for k in fast), (fast, slow)
        if recency == 300.0:
            assert fast
