"""Process memory settings."""

from __future__ import annotations

import sys

import pytest

from streams.config import Settings
from streams.exceptions import ConfigError
from streams.runtime.memory import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_arena_cap_is_applied_on_glibc() -> None:
    assert limit_malloc_arenas(2) is True
    assert limit_malloc_arenas(0) is False


def test_bad_arena_count_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="SEGSTREAM_MALLOC_ARENAS"):
        Settings.from_env({"SEGSTREAM_MALLOC_ARENAS": "-1"})
    with pytest.raises(ConfigError, match="SEGSTREAM_STATE_MEMTABLE_MB"):
        Settings.from_env({"SEGSTREAM_STATE_MEMTABLE_MB": "1"})
