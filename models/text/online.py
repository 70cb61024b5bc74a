"""Online text models (river): review sentiment learned from star ratings, and aspect
detectors learned from LLM-labelled reviews.

The sentiment model is a river ``LogisticRegression`` over token features
(:func:`models.text.tokens.features`). It starts from the shipped weights
(``sentiment_start.json.gz``, built by ``python -m models.text.train``) and keeps learning
from every review whose rating says what the writer felt (4-5 stars positive, 1-2
negative, 3 skipped). river's Rust-backed weight vector makes a prediction about 1 us
and an update about 4 us, cheap enough to run inline on every review.

Examples
--------
>>> m = SentimentModel.empty()
>>> for _ in range(100):
...     _ = m.learn({"great": 1.0}, rating=5, lang="en")
...     _ = m.learn({"awful": 1.0}, rating=1, lang="en")
>>> m.proba({"great": 1.0}) > 0.7 > 0.3 > m.proba({"awful": 1.0})
True
>>> m.learn({"meh": 1.0}, rating=3, lang="en")
False
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from river import linear_model, optim, utils

from models.text.exceptions import ArtifactError
from models.text.result import ASPECTS, Analysis

ARTIFACT = Path(__file__).with_name("sentiment_start.json.gz")
ARTIFACT_FORMAT = 1
ONLINE_LEARNING_RATE = 0.02


def rating_label(rating: int) -> bool | None:
    """The sentiment a star rating implies: True (4-5), False (1-2), None (3).

    >>> [rating_label(r) for r in (1, 3, 5)]
    [False, None, True]
    """
    if rating >= 4:
        return True
    if rating <= 2:
        return False
    return None


def _logreg(lr: float, weights: Mapping[str, float] | None = None,
            intercept: float = 0.0) -> linear_model.LogisticRegression:
    model = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=0.0)
    if weights:
        model._weights = utils.VectorDict(dict(weights))
    model.intercept = intercept
    return model


class SentimentModel:
    """P(positive | tokens) with online updates from star ratings.

    Parameters
    ----------
    weights, intercept
        Starting weights (the shipped artifact, or empty).
    version
        Version of the starting weights; :attr:`version` adds how many online updates
        followed.
    learned
        Updates seen so far per language (the English share decides how much the
        analyzer trusts this model over the English lexicon).
    """

    def __init__(self, weights: Mapping[str, float], intercept: float, version: str,
                 learned: Mapping[str, int] | None = None,
                 learning_rate: float = ONLINE_LEARNING_RATE) -> None:
        self._model = _logreg(learning_rate, weights, intercept)
        self.start_version = version
        self.learned: dict[str, int] = dict(learned or {})
        self.updates = 0

    @classmethod
    def empty(cls, learning_rate: float = 0.1) -> SentimentModel:
        return cls({}, 0.0, "empty", learning_rate=learning_rate)

    @property
    def version(self) -> str:
        return f"{self.start_version}+{self.updates}"

    def proba(self, feats: Mapping[str, float]) -> float:
        """Probability that text with these features is positive."""
        p: float = self._model.predict_proba_one(feats)[True]
        return p

    def weight(self, feature: str) -> float:
        w: float = self._model._weights.get(feature, 0.0)
        return w

    def learn(self, feats: Mapping[str, float], rating: int, lang: str) -> bool:
        """Learn from one rated review; False when the rating says nothing (3 stars)."""
        label = rating_label(rating)
        if label is None or not feats:
            return False
        self.learn_label(feats, label, lang)
        return True

    def learn_label(self, feats: Mapping[str, float], positive: bool, lang: str) -> None:
        self._model.learn_one(feats, positive)
        self.learned[lang] = self.learned.get(lang, 0) + 1
        self.updates += 1

    # -------------------------------------------------------------- artifact
    def to_artifact(self, meta: Mapping[str, Any], min_abs_weight: float = 0.0) -> bytes:
        """Deterministic gzip'd JSON: sorted keys, rounded weights, no timestamp."""
        weights = {k: round(float(v), 4) for k, v in dict(self._model._weights).items()
                   if abs(v) >= min_abs_weight}
        doc = {"format": ARTIFACT_FORMAT, "version": self.start_version,
               "intercept": round(float(self._model.intercept), 6),
               "learned": dict(sorted(self.learned.items())), "meta": dict(meta),
               "weights": dict(sorted(weights.items()))}
        raw = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return gzip.compress(raw.encode(), compresslevel=9, mtime=0)

    @classmethod
    def load(cls, path: Path = ARTIFACT,
             learning_rate: float = ONLINE_LEARNING_RATE) -> SentimentModel:
        """Load the starting weights written by ``python -m models.text.train``."""
        doc = read_artifact(path)
        return cls(doc["weights"], doc["intercept"], doc["version"],
                   learning_rate=learning_rate)


def read_artifact(path: Path = ARTIFACT) -> dict[str, Any]:
    """The artifact as a dict; :class:`ArtifactError` naming the fix when unreadable."""
    try:
        doc: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read the text model {path}: {exc}; rebuild it with "
                            "'python -m models.text.train'") from None
    if doc.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path} has format {doc.get('format')!r}, expected "
                            f"{ARTIFACT_FORMAT}; rebuild it with 'python -m models.text.train'")
    return doc


class AspectModel:
    """One online binary classifier per aspect, learned from LLM-labelled reviews.

    It only adds aspects the cue lists miss, and only for aspects it has seen at least
    ``min_positives`` labelled mentions of, so a cold model never invents aspects.

    >>> m = AspectModel(min_positives=5)
    >>> for _ in range(200):
    ...     m.learn({"骑手": 1.0}, {"logistics"})
    ...     m.learn({"好吃": 1.0}, {"quality"})
    >>> m.predict({"骑手": 1.0})
    ['logistics']
    """

    def __init__(self, threshold: float = 0.8, min_positives: int = 50,
                 learning_rate: float = 0.1) -> None:
        self.threshold = threshold
        self.min_positives = min_positives
        self._models = {a: _logreg(learning_rate) for a in ASPECTS}
        self.positives = dict.fromkeys(ASPECTS, 0)
        self.updates = 0

    def learn(self, feats: Mapping[str, float], aspects: Iterable[str]) -> None:
        present = set(aspects)
        for a, model in self._models.items():
            label = a in present
            model.learn_one(feats, label)
            if label:
                self.positives[a] += 1
        self.updates += 1

    def learn_analysis(self, feats: Mapping[str, float], analysis: Analysis) -> None:
        self.learn(feats, (m.aspect for m in analysis.aspects))

    def predict(self, feats: Mapping[str, float]) -> list[str]:
        """Aspects the learned detectors are confident about."""
        out = []
        for a, model in self._models.items():
            if self.positives[a] >= self.min_positives and \
                    model.predict_proba_one(feats)[True] >= self.threshold:
                out.append(a)
        return out
