"""Cluster descriptions: template, LLM with fallback, and the change-sensitive key."""

from __future__ import annotations

import pytest

from models.exceptions import ModelsError
from models.text.describe import llm_description, profile_key, template_description

PROFILE = {"cluster": 3, "size": 250, "share": 0.05, "distinctive": [
    {"feature": "price_complaints_90d", "value": 1.4, "overall": 0.1},
    {"feature": "aov_365d", "value": 20.0, "overall": 80.0}]}


def test_template_names_size_and_distinctive_features():
    text = template_description(PROFILE, {"aov_365d": "average order value"})
    assert text.startswith("Cluster 3: 250 users (5% of all).")
    assert "price_complaints_90d much higher (1.4 vs 0.1)" in text
    assert "average order value much lower (20 vs 80)" in text


def test_llm_answer_is_used_with_its_prompt_version():
    seen = {}

    def complete(system: str, user: str) -> str:
        seen["system"], seen["user"] = system, user
        return '  "Bargain hunters who complain about prices.\n Send them a coupon."  '

    text, source = llm_description(PROFILE, complete)
    assert text == "Cluster 3: Bargain hunters who complain about prices. Send them a coupon."
    assert source == "segment-description.v1"
    assert "price_complaints_90d" in seen["user"] and "marketers" in seen["system"]


@pytest.mark.parametrize("answer", ["", "x" * 2000])
def test_unusable_llm_answers_fall_back_to_the_template(answer):
    text, source = llm_description(PROFILE, lambda s, u: answer)
    assert source == "template" and text == template_description(PROFILE)


def test_failing_llm_falls_back_to_the_template():
    def complete(system: str, user: str) -> str:
        raise ModelsError("down")

    assert llm_description(PROFILE, complete)[1] == "template"


def test_key_changes_when_the_profile_shifts():
    moved = {**PROFILE, "distinctive": [{**PROFILE["distinctive"][0], "value": 2.5},
                                        PROFILE["distinctive"][1]]}
    assert profile_key(PROFILE) != profile_key(moved)


def test_malformed_profile_is_refused():
    with pytest.raises(ModelsError, match="cluster profile"):
        template_description({"cluster": 1})
