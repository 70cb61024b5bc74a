from __future__ import annotations

from pathlib import Path

import pytest

from models.learn.config import ModelConfig
from streams.exceptions import ConfigError


def test_defaults_and_overrides() -> None:
    cfg = ModelConfig.from_env({
        "SEGSTREAM_MODELS_ENABLED": "true", "SEGSTREAM_CHURN_HORIZON_DAYS": "14",
        "SEGSTREAM_MODEL_DRIFT_POLICY": "rollback", "SEGSTREAM_MODEL_SNAPSHOT_DIR": "/x/m",
        "SEGSTREAM_MODEL_CLUSTERS": "4"})
    assert cfg.enabled and cfg.horizon_days == 14 and cfg.drift_policy == "rollback"
    assert cfg.snapshot_dir == Path("/x/m") and cfg.clusters == 4
    assert ModelConfig.from_env({}) == ModelConfig()


def test_every_problem_is_reported_with_the_fix() -> None:
    with pytest.raises(ConfigError) as exc:
        ModelConfig.from_env({"SEGSTREAM_CHURN_HORIZON_DAYS": "0",
                              "SEGSTREAM_MODEL_DEBOUNCE_S": "soon",
                              "SEGSTREAM_MODELS_ENABLED": "maybe"})
    text = str(exc.value)
    assert "SEGSTREAM_CHURN_HORIZON_DAYS='0'" in text
    assert "SEGSTREAM_MODEL_DEBOUNCE_S='soon'" in text
    assert "true or false" in text


def test_tiers_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="MEDIUM must be below"):
        ModelConfig.from_env({"SEGSTREAM_CHURN_TIER_MEDIUM": "0.8"})
