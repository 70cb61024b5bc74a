"""Cost of the local review analyzer per review, against its own building blocks.

Baselines in the same run: jieba segmentation alone (Chinese) and the VADER lexicon
alone (English). Then the whole analysis, analysis plus the online update from the
rating (what the worker runs per review), and the feature vector of users with and
without review-text records.

Usage: python bench/text_analyzer.py [--reviews N]
"""

from __future__ import annotations

import argparse
import time

import msgspec

from models.text import train
from models.text.local import LocalAnalyzer
from models.text.tokens import Tokenizer
from streams.contracts.events import ClickEvent, OrderEvent, ReviewEvent
from streams.features.update import update
from streams.features.vector import vector
from streams.sim.generator import REVIEW_TEXTS, generate


def timed(label: str, n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    us = (time.perf_counter() - t) / n * 1e6
    print(f"{label:<44} {us:8.1f} us/review")
    return us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=3000)
    args = ap.parse_args()
    zh = [ex.text for ex in train.split(train.load_waimai())[1]][: args.reviews]
    en_pool = [t for group in REVIEW_TEXTS["en"] for t in group]
    en = [en_pool[i % len(en_pool)] for i in range(min(args.reviews, 2000))]
    analyzer = LocalAnalyzer.default()
    tok = Tokenizer()
    analyzer.analyze("预热")  # load the jieba dictionary outside the timings
    tok.tokens("预热", "zh")
    print(f"{len(zh)} held-out waimai reviews (avg {sum(map(len, zh)) / len(zh):.0f} chars), "
          f"{len(en)} English reviews")

    timed("baseline zh: jieba tokens only", len(zh), lambda: [tok.tokens(t, "zh") for t in zh])
    timed("zh: analyze", len(zh), lambda: [analyzer.analyze(t, "zh") for t in zh])
    timed("zh: analyze_and_learn (worker path)", len(zh),
          lambda: [analyzer.analyze_and_learn(t, 5 if i % 2 else 1, "zh")
                   for i, t in enumerate(zh)])
    vader = analyzer._vader
    timed("baseline en: VADER polarity_scores only", len(en),
          lambda: [vader.polarity_scores(t) for t in en])
    timed("en: analyze", len(en), lambda: [analyzer.analyze(t, "en") for t in en])

    # feature vector with and without text records (same simulated users)
    types = {"click": ClickEvent, "order": OrderEvent, "review": ReviewEvent}
    sim = list(generate(1000, 60_000, seed=3, end_ms=1_767_225_600_000).events())
    plain: dict = {}
    texted: dict = {}
    for raw in sim:
        ev = msgspec.convert(raw, types[raw["type"]], strict=True)
        plain[ev.user_id] = update(plain.get(ev.user_id), ev)
        a = analyzer.analyze(ev.text, ev.lang) if isinstance(ev, ReviewEvent) else None
        texted[ev.user_id] = update(texted.get(ev.user_id), ev, analysis=a)
    with_text = [s for s in texted.values() if s.texts]
    same_plain = [plain[u] for u, s in texted.items() if s.texts]
    reps = 20
    n = reps * len(with_text)
    print(f"vector() over {len(with_text)} users who wrote reviews, x{reps}")
    timed("  baseline: same users, no text records", n,
          lambda: [vector(s) for _ in range(reps) for s in same_plain])
    timed("  with text records", n, lambda: [vector(s) for _ in range(reps) for s in with_text])


if __name__ == "__main__":
    main()
