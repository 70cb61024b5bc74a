"""JSON Schema (draft 2020-12) files for producers in other languages.

The schemas are generated from the msgspec structs, so the Python contract and the
published schema cannot drift apart; a unit test fails when the committed files are
stale. Regenerate with ``python -m streams.contracts.jsonschema``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from streams.contracts.events import EVENT_TYPES, SCHEMA_VERSION

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_for(kind: str) -> dict[str, Any]:
    """The schema of one event type, with the timestamp rules spelled out."""
    cls = EVENT_TYPES[kind]
    raw = msgspec.json.schema(cls)
    defs = raw["$defs"]
    body = defs.pop(cls.__name__)
    props = body["properties"]
    props["ts"] = {
        "description": "Event time: RFC 3339 with an offset, or epoch milliseconds.",
        "anyOf": [{"type": "integer", "minimum": 0},
                  {"type": "string", "format": "date-time"}],
    }
    props["schema_version"] = {"const": SCHEMA_VERSION}
    props["type"] = {"const": kind, "description": "Optional when the topic implies it."}
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:segstream:schema:{kind}:v{SCHEMA_VERSION}",
        **body,
        "additionalProperties": True,
    }
    if defs:
        out["$defs"] = defs
    return out


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in EVENT_TYPES:
        path = directory / f"{kind}.v{SCHEMA_VERSION}.json"
        path.write_text(json.dumps(schema_for(kind), indent=2, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print(p)
