"""Model snapshots: versioned, checksummed files with the input offsets they have seen.

Why a header + payload file: the header (one JSON line: ``format``, ``model_version``,
``created``, ``sha256``, ``offsets``, ``sizes``) can be read and checked without
unpickling anything, and the SHA-256 of the payload catches truncation and bit rot
before a corrupt model is loaded. Files are written to a temporary name, fsynced and
renamed, so a crash never leaves a half-written newest snapshot; the loader still
refuses a bad file with a clear error and falls back to the previous one.

The payload is a pickle of the suite (river models are plain Python objects built for
pickling). Pickles execute code when loaded: load snapshots only from a directory the
worker itself writes.

Examples
--------
>>> import tempfile
>>> from models.learn.config import ModelConfig
>>> from models.learn.suite import ModelSuite
>>> d = Path(tempfile.mkdtemp())
>>> path = save(ModelSuite(ModelConfig(name="demo")), d, {"shop.orders/0": 42})
>>> suite, meta = load_newest_valid(d)
>>> suite.model_version == meta["model_version"], meta["offsets"], path.name
(True, {'shop.orders/0': 42}, 'models-00000001.snap')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.learn.exceptions import SnapshotError

if TYPE_CHECKING:
    from models.learn.suite import ModelSuite

log = logging.getLogger(__name__)

FORMAT = "segstream-models/1"
_NAME = re.compile(r"^models-(\d{8})\.snap$")
MAX_HEADER = 1 << 20


def save(suite: ModelSuite, directory: Path, offsets: dict[str, int], keep: int = 5) -> Path:
    """Write the next snapshot of ``suite``; set its ``model_version``; prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    counter = max((_counter(p) for p in _files(directory)), default=0) + 1
    counter = max(counter, suite.snapshot_counter + 1)
    prev = (suite.snapshot_counter, suite.snapshot_sha, suite.offsets)
    # The version is part of the payload, so a loaded suite knows what it is: derive it
    # from a digest of the models, then pickle with the version set.
    suite.snapshot_counter = counter
    suite.offsets = dict(offsets)
    suite.snapshot_sha = hashlib.sha256(pickle.dumps(
        (suite.churn, suite.value, suite.clusters), protocol=5)).hexdigest()
    try:
        payload = pickle.dumps(suite, protocol=5)
    except Exception:
        suite.snapshot_counter, suite.snapshot_sha, suite.offsets = prev
        raise
    header = {
        "format": FORMAT,
        "model_version": suite.model_version,
        "created": time.time(),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "offsets": dict(offsets),
        "sizes": {"payload": len(payload)},
    }
    path = directory / f"models-{counter:08d}.snap"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in sorted(_files(directory), key=_counter)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def read(path: Path) -> tuple[ModelSuite, dict[str, Any]]:
    """Load one snapshot; raise :class:`SnapshotError` saying what is wrong with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read snapshot: {exc}") from exc
    nl = data.find(b"\n", 0, MAX_HEADER)
    if nl < 0:
        raise SnapshotError(f"{path}: no snapshot header (truncated or not a snapshot)")
    try:
        meta = json.loads(data[:nl])
    except ValueError as exc:
        raise SnapshotError(f"{path}: unreadable snapshot header: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{path}: unknown snapshot format, expected {FORMAT}")
    payload = data[nl + 1:]
    if len(payload) != meta.get("sizes", {}).get("payload"):
        raise SnapshotError(f"{path}: payload is {len(payload)} bytes, header says "
                            f"{meta.get('sizes', {}).get('payload')} (truncated)")
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise SnapshotError(f"{path}: checksum mismatch (file corrupt)")
    try:
        suite = pickle.loads(payload)  # own files, checksum verified
    except Exception as exc:
        raise SnapshotError(f"{path}: payload does not unpickle: {exc}") from exc
    if suite.model_version != meta.get("model_version"):
        raise SnapshotError(f"{path}: payload version {suite.model_version} differs from "
                            f"header {meta.get('model_version')}")
    meta["path"] = str(path)
    meta["bytes"] = len(data)
    return suite, meta


def load_newest_valid(directory: Path) -> tuple[ModelSuite, dict[str, Any]] | None:
    """The newest snapshot that loads; each refused one is logged with its reason."""
    if not directory.is_dir():
        return None
    for path in sorted(_files(directory), key=_counter, reverse=True):
        try:
            return read(path)
        except SnapshotError as exc:
            log.error("refusing model snapshot: %s; trying the previous one", exc)
    return None


def _files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if _NAME.match(p.name)]


def _counter(path: Path) -> int:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else 0
