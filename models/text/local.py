"""The embedded review analyzer: no network, Chinese and English, tens of microseconds.

Sentiment comes from the online river model (:mod:`models.text.online`), which starts from
weights trained on public labelled reviews and keeps learning from the star ratings of
the reviews it sees. For English the published VADER lexicon (vaderSentiment) carries the
score until the model has learned from enough English ratings. Aspects come from the
bilingual cue lists (:mod:`models.text.cues`) per clause; a mention without a polarity
cue takes the polarity of its clause, and the learned aspect detectors (trained from LLM
results when an endpoint is configured) add aspects the cues miss.

Examples
--------
>>> analyzer = LocalAnalyzer.default()
>>> a = analyzer.analyze("菜很好吃，就是送餐太慢了，等了一个半小时")
>>> a.lang, a.label, a.aspect_polarity("quality"), a.aspect_polarity("logistics")
('zh', 'negative', 1, -1)
>>> b = analyzer.analyze("Great quality, but shipping was slow and the box was crushed.")
>>> b.aspect_polarity("quality"), b.aspect_polarity("logistics"), b.aspect_polarity("packaging")
(1, -1, -1)
"""

from __future__ import annotations

from collections.abc import Mapping

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from models.text.cues import find_cues
from models.text.online import AspectModel, SentimentModel
from models.text.result import ASPECTS, Analysis, AspectMention, label_of
from models.text.tokens import Tokenizer, detect_lang, features

# English updates after which the learned model weighs as much as the lexicon.
EN_FULL_TRUST = 5_000
MAX_KEYWORDS = 5
CLAUSE_BAND = 0.3
_POLARITY = {-1: "negative", 0: "neutral", 1: "positive"}
_EN_STOP = frozenset((
    "the", "and", "was", "were", "but", "for", "with", "this", "that", "have", "has", "had",
    "are", "very", "too", "not", "its", "it's", "you", "they", "them", "their", "our", "out",
    "all", "just", "really", "what", "when", "from", "then", "than",
))


def normalise_lang(lang: str | None, text: str) -> str:
    """Primary language subtag of the event's ``lang`` (``zh-CN`` -> ``zh``), or detected.

    >>> normalise_lang("zh-CN", ""), normalise_lang(None, "好"), normalise_lang("EN", "")
    ('zh', 'zh', 'en')
    """
    if lang:
        return lang.split("-", 1)[0].lower()
    return detect_lang(text)


class LocalAnalyzer:
    """Analyzer that runs in-process; also learns from ratings and LLM labels.

    Parameters
    ----------
    sentiment
        The online sentiment model (usually :meth:`SentimentModel.load`).
    aspects
        Learned aspect detectors (empty until LLM labels arrive).
    """

    def __init__(self, sentiment: SentimentModel, aspects: AspectModel | None = None,
                 tokenizer: Tokenizer | None = None) -> None:
        self.sentiment = sentiment
        self.aspects = aspects if aspects is not None else AspectModel()
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()
        self._vader = SentimentIntensityAnalyzer()

    @classmethod
    def default(cls) -> LocalAnalyzer:
        """The analyzer with the shipped starting model."""
        return cls(SentimentModel.load())

    @property
    def version(self) -> str:
        """Starting model version plus the number of online updates since."""
        return f"local/{self.sentiment.version}"

    # ---------------------------------------------------------------- public API
    def analyze(self, text: str, lang: str | None = None) -> Analysis:
        analysis, _ = self._analyze(text, normalise_lang(lang, text))
        return analysis

    def learn_one(self, text: str, rating: int, lang: str | None = None) -> bool:
        """Learn sentiment from a rated review (4-5 positive, 1-2 negative, 3 ignored)."""
        code = normalise_lang(lang, text)
        return self.sentiment.learn(self._features(text, code), rating, code)

    def analyze_and_learn(self, text: str, rating: int, lang: str | None = None) -> Analysis:
        """Analyse a review, then learn from its rating (one tokenisation for both).

        The analysis is computed *before* the update, so a review's own rating never
        leaks into its score.
        """
        code = normalise_lang(lang, text)
        analysis, feats = self._analyze(text, code)
        self.sentiment.learn(feats, rating, code)
        return analysis

    def learn_labels(self, text: str, analysis: Analysis) -> None:
        """Learn aspect detection from an LLM's analysis of ``text``."""
        code = normalise_lang(analysis.lang, text)
        self.aspects.learn_analysis(self._features(text, code), analysis)

    # ---------------------------------------------------------------- internals
    def _features(self, text: str, lang: str) -> dict[str, float]:
        feats: dict[str, float] = {}
        for _, toks in self.tokenizer.clauses(text, lang):
            feats.update(features(toks))
        return feats

    def _analyze(self, text: str, lang: str) -> tuple[Analysis, dict[str, float]]:
        feats: dict[str, float] = {}
        found: dict[str, list[int]] = {}
        clause_feats: list[tuple[str, dict[str, float], dict[str, int]]] = []
        for clause, toks in self.tokenizer.clauses(text, lang):
            cf = features(toks)
            feats.update(cf)
            cues = find_cues(clause, lang if lang == "zh" else "en", toks)
            if cues:
                clause_feats.append((clause, cf, cues))
        if not feats:
            return Analysis(lang=lang, sentiment=0.0, label="neutral"), feats
        score = self._score(text, feats, lang)
        for clause, cf, cues in clause_feats:
            clause_score: float | None = None
            for aspect, polarity in cues.items():
                if polarity == 0:
                    if clause_score is None:
                        clause_score = self._score(clause, cf, lang)
                    polarity = 1 if clause_score >= CLAUSE_BAND else (
                        -1 if clause_score <= -CLAUSE_BAND else 0)
                found.setdefault(aspect, []).append(polarity)
        for aspect in self.aspects.predict(feats):
            if aspect not in found:
                found[aspect] = [1 if score >= CLAUSE_BAND else -1 if score <= -CLAUSE_BAND
                                 else 0]
        mentions = [AspectMention(aspect=a, polarity=_POLARITY[_merge(found[a])])  # type: ignore[arg-type]
                    for a in ASPECTS if a in found]
        score = round(max(-1.0, min(1.0, score)), 4)
        return (Analysis(lang=lang, sentiment=score, label=label_of(score), aspects=mentions,
                         keywords=self._keywords(feats, lang)), feats)

    def _score(self, text: str, feats: Mapping[str, float], lang: str) -> float:
        model = 2.0 * self.sentiment.proba(feats) - 1.0
        if lang == "zh":
            return model
        lexicon: float = self._vader.polarity_scores(text)["compound"]
        trust = min(0.5, self.sentiment.learned.get(lang, 0) / EN_FULL_TRUST * 0.5)
        return (1.0 - trust) * lexicon + trust * model

    def _keywords(self, feats: Mapping[str, float], lang: str) -> list[str]:
        """Unigrams that move the sentiment most, strongest first: the model's weights
        for Chinese, the lexicon's valence (plus the model's) for English."""
        weight = self.sentiment.weight
        if lang == "zh":
            cands = [t for t in feats if "_" not in t and len(t) >= 2]

            def strength(t: str) -> float:
                return abs(weight(t))
        else:
            lexicon = self._vader.lexicon
            cands = [t for t in feats if "_" not in t and len(t) >= 3 and t not in _EN_STOP]

            def strength(t: str) -> float:
                return abs(lexicon.get(t, 0.0)) + abs(weight(t))
        cands.sort(key=lambda t: -strength(t))
        return [t[:40] for t in cands[:MAX_KEYWORDS] if strength(t) > 0.0]


def _merge(polarities: list[int]) -> int:
    """One polarity for an aspect raised in several clauses: a complaint wins."""
    if -1 in polarities:
        return -1
    return 1 if 1 in polarities else 0
