"""Language detection, tokenisation and the sparse features the text models read.

Chinese is segmented with jieba (a maintained dictionary + HMM segmenter; hand-written
segmentation would miss most words), English with a regular expression. Features are
token presence plus adjacent-token pairs, which carry negation ("not_good", "不_好")
without a parser.

Examples
--------
>>> detect_lang("物流太慢了"), detect_lang("Arrived late"), detect_lang("")
('zh', 'en', 'en')
>>> english_tokens("Didn't work, NOT good!")
['didn', 't', 'work', 'not', 'good']
>>> sorted(features(["not", "good"]))
['good', 'not', 'not_good']
>>> split_clauses("质量不错，但是太贵了。Fast delivery but the box was crushed")
['质量不错', '太贵了', 'Fast delivery', 'the box was crushed']
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence

import jieba

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_EN_TOKEN = re.compile(r"[a-z0-9]+")
# Clause boundaries: punctuation of both scripts, and contrast words that usually flip
# the topic of a review ("good food, but slow delivery").
_CLAUSE = re.compile(
    r"[，。！？；、,.!?;\n~\uff5e…]+|(?:但是|不过|可是|但|然而)|\b(?:but|however|although|though)\b",
    re.IGNORECASE,
)
_PUNCT_OR_SPACE = re.compile(r"^[\W_]+$")
_ZH_CONTRAST = frozenset({"但是", "不过", "可是", "但", "然而"})


def detect_lang(text: str) -> str:
    """``"zh"`` when at least a third of the letters are Chinese characters, else ``"en"``."""
    cjk = len(_CJK.findall(text))
    if not cjk:
        return "en"
    latin = len(_LATIN.findall(text))
    return "zh" if cjk * 3 >= cjk + latin else "en"


def english_tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric runs."""
    return _EN_TOKEN.findall(text.lower())


def split_clauses(text: str) -> list[str]:
    """The clauses of a review, split at punctuation and at contrast words."""
    return [c.strip() for c in _CLAUSE.split(text) if c and c.strip()]


def features(tokens: Sequence[str]) -> dict[str, float]:
    """Presence of each token and of each adjacent pair (``a_b``)."""
    out = dict.fromkeys(tokens, 1.0)
    for a, b in itertools.pairwise(tokens):
        out[f"{a}_{b}"] = 1.0
    return out


class Tokenizer:
    """Word tokens for Chinese (jieba) and English text.

    Each instance owns its jieba dictionary (loaded lazily, ~0.5 s once), so nothing is
    shared across analyzers or loaded at import time.
    """

    def __init__(self) -> None:
        self._jieba: jieba.Tokenizer | None = None

    def _segmenter(self) -> jieba.Tokenizer:
        if self._jieba is None:
            jieba.setLogLevel(logging.WARNING)
            seg = jieba.Tokenizer()
            seg.initialize()
            self._jieba = seg
        return self._jieba

    def warm_up(self) -> None:
        """Load the jieba dictionary now (a worker does it before joining its group, so
        the first batch does not stall for it)."""
        self._segmenter()

    def clauses(self, text: str, lang: str) -> list[tuple[str, list[str]]]:
        """``(clause text, clause tokens)`` pairs; Chinese is segmented once for the whole
        text and cut at punctuation and contrast words (one jieba call, not one per clause).

        >>> Tokenizer().clauses("好吃，但是太贵了", "zh")
        [('好吃', ['好吃']), ('太贵了', ['太贵', '了'])]
        >>> Tokenizer().clauses("Tasty, but pricey", "en")
        [('Tasty', ['tasty']), ('pricey', ['pricey'])]
        """
        if lang != "zh":
            return [(c, english_tokens(c)) for c in split_clauses(text)]
        out: list[tuple[str, list[str]]] = []
        words: list[str] = []
        for w in self._segmenter().lcut(text):
            if _PUNCT_OR_SPACE.match(w) or w in _ZH_CONTRAST:
                if words:
                    out.append(("".join(words), [x.lower() for x in words]))
                    words = []
            else:
                words.append(w)
        if words:
            out.append(("".join(words), [x.lower() for x in words]))
        return out

    def tokens(self, text: str, lang: str) -> list[str]:
        """Tokens of ``text`` without punctuation or whitespace.

        >>> Tokenizer().tokens("物流太慢，包装压坏了", "zh")
        ['物流', '太慢', '包装', '压坏', '了']
        """
        if lang != "zh":
            return english_tokens(text)
        words = self._segmenter().lcut(text)
        return [w.lower() for w in words if not _PUNCT_OR_SPACE.match(w)]
