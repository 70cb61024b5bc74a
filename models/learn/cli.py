"""``segstream models``: inspect the newest model snapshot of a directory.

Why from a snapshot: the worker's models live in its process; the snapshot is the durable,
checksummed copy any operator can read without touching the running worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from models.learn.snapshot import load_newest_valid
from models.learn.suite import ModelSuite

DEFAULT_DIR = Path(".local/models")


@click.group("models")
def models() -> None:
    """Online models: prequential metrics, clusters, snapshots."""


def _load(directory: Path) -> tuple[ModelSuite, dict[str, Any]]:
    found = load_newest_valid(directory)
    if found is None:
        raise click.ClickException(
            f"no valid model snapshot in {directory}; run a worker with "
            "SEGSTREAM_MODELS_ENABLED=true or point --dir at SEGSTREAM_MODEL_SNAPSHOT_DIR")
    return found


@models.command("report")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=DEFAULT_DIR,
              show_default=True, help="Snapshot directory.")
def report(directory: Path) -> None:
    """Prequential metrics, confusion matrix and cluster profiles of the newest snapshot."""
    suite, meta = _load(directory)
    click.echo(format_report(suite, meta))


@models.command("clusters")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=DEFAULT_DIR,
              show_default=True, help="Snapshot directory.")
def clusters(directory: Path) -> None:
    """Cluster profiles: size, share and the features that set each cluster apart."""
    suite, _ = _load(directory)
    click.echo(format_profiles(suite.cluster_profiles()))


def format_report(suite: ModelSuite, meta: dict[str, Any]) -> str:
    """The text of ``models report`` (also used by the docs and tests)."""
    r = suite.report()
    lines = [f"model_version {r['model_version']}  snapshot {meta.get('path')} "
             f"({meta.get('bytes', 0):,} bytes)",
             f"input offsets {meta.get('offsets')}", ""]
    churn = r["churn"]
    lines.append(f"churn (n={churn['n']:,})        overall   rolling")
    for name in ("auc", "logloss", "accuracy", "precision", "recall"):
        lines.append(f"  {name:<18} {_f(churn['overall'][name]):>8} "
                     f"{_f(churn['rolling'][name]):>9}")
    cm = churn["confusion"]
    lines += ["  confusion (rows actual, columns predicted)",
              "               pred 0   pred 1",
              f"    actual 0 {cm['0']['0']:>8} {cm['0']['1']:>8}",
              f"    actual 1 {cm['1']['0']:>8} {cm['1']['1']:>8}", ""]
    value = r["value"]
    lines.append(f"value (n={value['n']:,})  MAE overall {_f(value['overall']['mae'])}  "
                 f"rolling {_f(value['rolling']['mae'])}")
    lines.append(f"drift detections {r['drift']}  learned {r['learned']}  "
                 f"scored {r['scored']}")
    lines += ["", format_profiles(suite.cluster_profiles())]
    return "\n".join(lines)


def format_profiles(profiles: list[dict[str, Any]]) -> str:
    if not profiles:
        return "clusters: none yet (no user scored)"
    lines = ["clusters"]
    for p in profiles:
        texts = "; ".join(d["text"] for d in p["distinctive"]) or "-"
        lines.append(f"  {p['cluster']:>2}  {p['size']:>7,} users ({p['share']:.1%})  {texts}")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
