"""The enriched-review contract: published schema is current, decode maps errors to DLQ
reasons like input events."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from streams.contracts.decode import DLQ_REASONS, decode_enriched
from streams.contracts.enriched import SCHEMA_FILE, schema
from streams.exceptions import InvalidEvent

GOOD = {"event_id": "r1", "user_id": "u1", "ts": 1_767_225_600_000, "source": "llm",
        "analysis": {"lang": "en", "sentiment": -0.7, "label": "negative",
                     "aspects": [{"aspect": "logistics", "polarity": "negative"}]},
        "model": "m", "prompt_version": "review-analysis.v1", "schema_version": 1}


def test_committed_schema_file_is_current():
    assert json.loads(SCHEMA_FILE.read_text()) == schema(), \
        "run: python -m streams.contracts.enriched"


def test_schema_and_decoder_accept_a_valid_record():
    jsonschema.Draft202012Validator(schema()).validate(GOOD)
    rec = decode_enriched(b"u1", orjson.dumps(GOOD), 10_000)
    assert rec.analysis.aspect_polarity("logistics") == -1


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"u1", b"", "empty"),
    (b"u1", b"{", "malformed_json"),
    (b"u1", b"[]", "not_an_object"),
    (b"u1", orjson.dumps({**GOOD, "schema_version": 2}), "unsupported_schema_version"),
    (b"u1", orjson.dumps({k: v for k, v in GOOD.items() if k != "analysis"}),
     "missing_field"),
    (b"u1", orjson.dumps({**GOOD, "source": "oracle"}), "invalid_enum"),
    (b"u1", orjson.dumps({**GOOD, "analysis": {**GOOD["analysis"], "sentiment": 2}}),
     "out_of_range"),
    (None, orjson.dumps(GOOD), "missing_key"),
    (b"u2", orjson.dumps(GOOD), "key_mismatch"),
    (b"u1", b"x" * 20_000, "oversized"),
])
def test_bad_records_get_a_dlq_reason(key, value, reason):
    with pytest.raises(InvalidEvent) as err:
        decode_enriched(key, value, 10_000)
    assert err.value.reason == reason and reason in DLQ_REASONS
