"""Versioned prompts: ``<name>.v<N>.md`` files beside this module.

Each result produced with a prompt records its ``<name>.v<N>`` version, so a changed
prompt is a new file (and a new version), never an edit in place.

Examples
--------
>>> p = load_prompt("review-analysis")
>>> p.version
'review-analysis.v1'
>>> "JSON" in p.text
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from models.text.exceptions import TextModelError

PROMPT_DIR = Path(__file__).parent
_NAME = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)\.v(?P<v>\d+)\.md$")


@dataclass(frozen=True)
class Prompt:
    """A prompt's text and its version (``name.vN``)."""

    name: str
    number: int
    text: str

    @property
    def version(self) -> str:
        return f"{self.name}.v{self.number}"


def load_prompt(name: str, number: int | None = None, directory: Path = PROMPT_DIR) -> Prompt:
    """The prompt ``name`` at version ``number`` (the highest when None)."""
    found: dict[int, Path] = {}
    for path in directory.glob(f"{name}.v*.md"):
        m = _NAME.match(path.name)
        if m and m.group("name") == name:
            found[int(m.group("v"))] = path
    if not found:
        raise TextModelError(f"no prompt file {name}.v<N>.md in {directory}")
    n = max(found) if number is None else number
    if n not in found:
        raise TextModelError(f"prompt {name} has no version {n} (have {sorted(found)})")
    return Prompt(name, n, found[n].read_text(encoding="utf-8").strip())
