"""Process-wide memory settings of the worker.

Why: glibc gives every thread that allocates concurrently its own malloc arena (up to
8 per core). The worker's threads (librdkafka's broker and main threads, RocksDB's
flush and compaction threads) each fragmented one; capped at two arenas the worker's
peak RSS at 1M users was ~40 MiB lower in ``bench/suite.py --only memory`` at the same
throughput. ``MALLOC_ARENA_MAX`` does the same but must be set before the process
starts; this applies it from the settings, before any client thread exists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc malloc.h


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (0: leave the default); True when applied.

    >>> limit_malloc_arenas(0)
    False
    """
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.warning("mallopt(M_ARENA_MAX) refused", extra={"ctx": {"arenas": arenas}})
    return ok
