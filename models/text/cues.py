"""Bilingual cue lists: which words say a clause is about an aspect, and which say how.

Chinese cues are matched as substrings of a clause (robust to how the segmenter cut it);
English cues as whole tokens or token pairs. A polarity cue preceded by a negation
("不贵", "not expensive") counts the other way. Cues were chosen from the vocabulary of
the food-delivery and product reviews the starting model is trained on.

Examples
--------
>>> find_cues("就是有点贵", "zh")
{'price': -1}
>>> find_cues("不贵，送得很快", "zh")
{'price': 1, 'logistics': 1}
>>> find_cues("the box was crushed", "en")
{'packaging': -1}
>>> find_cues("customer service", "en")
{'service': 0}
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from models.text.tokens import english_tokens

# aspect -> (mention cues, negative cues, positive cues); polarity cues are mentions too.
_ZH: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "quality": (
        ("质量", "品质", "做工", "味道", "口味", "口感", "材质", "用料", "新鲜", "食材",
         "正品", "效果"),
        ("难吃", "不好吃", "变质", "坏了", "质量差", "质量不好", "不新鲜", "太咸", "太淡",
         "太油", "馊", "异物", "头发", "生的", "没熟", "假货", "次品", "发臭"),
        ("好吃", "美味", "质量好", "质量不错", "质量很好", "新鲜", "正宗", "入味", "香",
         "好用", "耐用", "正品"),
    ),
    "price": (
        ("价格", "价钱", "性价比", "实惠", "划算", "优惠", "打折", "红包", "涨价", "份量",
         "分量", "量少", "量太少", "量足", "量大", "钱", "块"),
        ("贵", "不值", "不划算", "量少", "量太少", "太坑", "坑人", "涨价", "性价比低"),
        ("便宜", "实惠", "划算", "性价比高", "物美价廉", "量足", "量大", "值得", "超值"),
    ),
    "logistics": (
        ("物流", "快递", "配送", "送餐", "送货", "送达", "送到", "送来", "送的", "送得",
         "发货", "骑手", "小哥", "外卖员", "速度", "准时", "超时", "迟到", "等了", "小时",
         "分钟", "到货"),
        ("太慢", "很慢", "慢", "超时", "迟到", "等了", "晚了", "太久", "送错", "凉了", "冷了",
         "没送到", "延迟"),
        ("很快", "快", "准时", "及时", "神速", "提前", "迅速"),
    ),
    "service": (
        ("客服", "服务", "态度", "商家", "老板", "店家", "售后", "退款", "退货", "回复",
         "电话", "备注"),
        ("态度差", "态度不好", "不理", "没人理", "不回复", "拒绝", "敷衍", "不退", "差评",
         "无视备注", "没看备注"),
        ("态度好", "态度很好", "热情", "周到", "贴心", "耐心", "服务好", "服务很好"),
    ),
    "packaging": (
        ("包装", "盒子", "餐盒", "打包", "密封", "袋子", "箱子", "外包装", "包裹"),
        ("漏", "洒", "撒了", "压坏", "破损", "破了", "烂了", "简陋", "变形"),
        ("包装好", "包装精美", "包装很好", "包装不错", "严实", "精致", "精美"),
    ),
}

_EN: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "quality": (
        ("quality", "material", "materials", "made", "build", "taste", "tastes", "fresh",
         "works", "durable", "product"),
        ("broke", "broken", "defective", "flimsy", "poor quality", "stale", "cheaply made",
         "stopped working", "fell apart", "faulty", "tasteless"),
        ("great quality", "good quality", "excellent quality", "well made", "sturdy",
         "durable", "delicious", "tasty", "works well", "works great"),
    ),
    "price": (
        ("price", "priced", "value", "money", "cost", "worth", "deal", "expensive", "cheap",
         "pricey", "overpriced", "affordable", "bargain"),
        ("expensive", "overpriced", "pricey", "waste of money", "not worth", "rip off"),
        ("cheap", "affordable", "bargain", "good value", "great value", "fair price",
         "worth it", "good deal", "great deal"),
    ),
    "logistics": (
        ("delivery", "delivered", "shipping", "shipped", "arrived", "arrival", "courier",
         "tracking", "dispatch", "dispatched", "shipment"),
        ("slow", "late", "delayed", "forever", "lost", "never arrived", "took weeks",
         "took forever"),
        ("fast", "quick", "quickly", "on time", "early", "prompt", "speedy"),
    ),
    "service": (
        ("service", "support", "seller", "staff", "refund", "return", "returns", "answered",
         "response", "replied", "customer"),
        ("rude", "unhelpful", "never answered", "ignored", "no response", "never replied",
         "no refund", "useless support"),
        ("helpful", "friendly", "responsive", "great service", "excellent service",
         "good service"),
    ),
    "packaging": (
        ("packaging", "package", "packed", "box", "wrapped", "wrapping", "packing", "seal",
         "sealed"),
        ("crushed", "damaged", "dented", "leaked", "leaking", "torn", "poorly packed"),
        ("well packed", "nicely packed", "well packaged", "nicely wrapped"),
    ),
}

_ZH_NEGATIONS = frozenset("不没无别")
_EN_NEGATIONS = frozenset({"not", "no", "never", "t", "hardly", "isn", "wasn", "don", "didn"})

_Table = Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]
# cue -> [(aspect, -1 | 1 | None)]: None marks a mention without polarity
_Entries = dict[str, list[tuple[str, int | None]]]


def _compile(table: _Table, english: bool) -> tuple[re.Pattern[str], _Entries]:
    """One alternation of every cue, longest first, so "不好吃" wins over "好吃" and one
    scan of a clause finds every cue."""
    entries: _Entries = {}
    for aspect, (mentions, neg, pos) in table.items():
        for cues, base in ((neg, -1), (pos, 1), (mentions, None)):
            for cue in cues:
                slot = entries.setdefault(cue, [])
                if not any(a == aspect for a, _ in slot):
                    slot.append((aspect, base))
    alternation = "|".join(re.escape(c) for c in sorted(entries, key=len, reverse=True))
    pattern = f"(?<= )(?:{alternation})(?= )" if english else f"(?:{alternation})"
    return re.compile(pattern), entries


_ZH_RE, _ZH_ENTRIES = _compile(_ZH, english=False)
_EN_RE, _EN_ENTRIES = _compile(_EN, english=True)


def find_cues(clause: str, lang: str, tokens: list[str] | None = None) -> dict[str, int]:
    """Aspects a clause mentions: ``{aspect: -1 | 0 | 1}``, 0 when no polarity cue fired.

    The first polarity cue of an aspect in the clause decides; a negation right before a
    cue ("不贵", "not expensive") flips it. ``tokens`` are the clause's English tokens
    (computed here when not given).
    """
    if lang == "zh":
        text, pattern, entries = clause, _ZH_RE, _ZH_ENTRIES
    else:
        toks = tokens if tokens is not None else english_tokens(clause)
        text, pattern, entries = f" {' '.join(toks)} ", _EN_RE, _EN_ENTRIES
    polar: dict[str, int] = {}
    mentioned: list[str] = []
    for m in pattern.finditer(text):
        start = m.start()
        if lang == "zh":
            negated = start > 0 and text[start - 1] in _ZH_NEGATIONS
        else:
            negated = text[:start - 1].rsplit(" ", 1)[-1] in _EN_NEGATIONS
        for aspect, base in entries[m.group()]:
            if base is None:
                mentioned.append(aspect)
            elif aspect not in polar:
                polar[aspect] = -base if negated else base
    out = dict(polar)
    for aspect in mentioned:
        out.setdefault(aspect, 0)
    return out
