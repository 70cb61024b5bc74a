"""The analysis schema refuses what an LLM might get wrong."""

from __future__ import annotations

import json

import jsonschema
import pytest

from models.text.exceptions import InvalidAnalysis
from models.text.result import analysis_schema, parse_analysis

GOOD = {"lang": "zh", "sentiment": -0.5, "label": "negative",
        "aspects": [{"aspect": "price", "polarity": "negative"}], "keywords": ["贵"]}


@pytest.mark.parametrize(("change", "why"), [
    ({"sentiment": 1.5}, "<= 1.0"),
    ({"label": "angry"}, "label"),
    ({"label": "positive"}, "contradicts"),
    ({"aspects": [{"aspect": "taste", "polarity": "negative"}]}, "aspect"),
    ({"aspects": [{"aspect": "price", "polarity": "negative"}] * 2}, "repeat"),
    ({"keywords": ["x" * 41]}, "length"),
    ({"lang": "Chinese"}, "lang"),
])
def test_invalid_answers_are_refused_with_the_reason(change, why):
    with pytest.raises(InvalidAnalysis, match=why):
        parse_analysis({**GOOD, **change})


def test_malformed_json_is_refused():
    with pytest.raises(InvalidAnalysis):
        parse_analysis("{results: ")


def test_valid_answers_pass_both_the_struct_and_the_published_schema():
    a = parse_analysis(json.dumps(GOOD, ensure_ascii=False))
    assert a.aspect_polarity("price") == -1
    jsonschema.Draft202012Validator(analysis_schema()).validate(GOOD)
    assert not jsonschema.Draft202012Validator(analysis_schema()).is_valid(
        {**GOOD, "sentiment": 3})
