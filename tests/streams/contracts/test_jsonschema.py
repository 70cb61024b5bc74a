"""The published JSON Schemas match the Python contracts and accept/refuse the same data."""

from __future__ import annotations

import json

import jsonschema
import pytest

from streams.contracts.events import EVENT_TYPES
from streams.contracts.jsonschema import SCHEMA_DIR, schema_for


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_committed_schema_files_are_current(kind):
    on_disk = json.loads((SCHEMA_DIR / f"{kind}.v1.json").read_text())
    assert on_disk == schema_for(kind), "run: python -m streams.contracts.jsonschema"


VALID = {
    "click": {"event_id": "e", "user_id": "u", "ts": "2025-01-01T00:00:00Z",
              "schema_version": 1, "session_id": "s", "action": "view"},
    "order": {"event_id": "e", "user_id": "u", "ts": 1735689600000, "schema_version": 1,
              "order_id": "o", "status": "paid", "total": 10.5, "currency": "EUR",
              "items": [{"product_id": "p", "quantity": 1, "unit_price": 10.5}]},
    "review": {"event_id": "e", "user_id": "u", "ts": 1735689600000, "schema_version": 1,
               "rating": 5, "text": "great"},
}
INVALID = {
    "click": {**VALID["click"], "action": "teleport"},
    "order": {**VALID["order"], "currency": "euro"},
    "review": {**VALID["review"], "rating": 6},
}


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_schema_accepts_valid_and_refuses_invalid(kind):
    validator = jsonschema.Draft202012Validator(schema_for(kind))
    validator.validate(VALID[kind])
    assert not validator.is_valid(INVALID[kind])
    missing = {k: v for k, v in VALID[kind].items() if k != "user_id"}
    assert not validator.is_valid(missing)
