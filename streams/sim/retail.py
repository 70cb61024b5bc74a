"""UCI Online Retail invoices as segstream order events.

Why: the simulator's truth is only as good as its personas; the UCI "Online Retail" data
(541,909 invoice lines of a UK shop, 2010-12-01 to 2011-12-09) is real purchase behaviour.
Turning each invoice into one ``order`` event lets replay, features and segments run on it
unchanged.

Mapping
-------
- one event per invoice: ``event_id`` ``retail-<InvoiceNo>``, ``order_id`` ``InvoiceNo``,
  ``user_id`` ``c<CustomerID>`` (``17850.0`` -> ``c17850``);
- ``InvoiceDate`` is UK local time without an offset; it is taken as UTC (at most an hour
  off in summer, which no feature window notices);
- normal invoices are ``placed``; invoices whose number starts with ``C`` are
  cancellations of earlier sales and become ``refunded`` with the absolute value as
  ``total`` (the data does not say which invoice they cancel, so they carry their own
  ``order_id``; the features subtract refunds from spend);
- items keep ``StockCode`` and the absolute ``Quantity``; ``category`` is a coarse guess
  from keywords in ``Description`` (None when no keyword matches);
- ``currency`` GBP, no discount, coupon or payment method (the data has none).

Skipped, and counted in :class:`RetailStats`: lines without ``CustomerID`` (about a
quarter: they cannot be attributed to a user), lines with quantity 0 or a negative unit
price (bad-debt adjustments), and invoices whose total is 0 (free samples only).
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

CURRENCY = "GBP"

# Checked in order; the first category with a keyword among the description's words wins.
CATEGORY_KEYWORDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("fees", frozenset({"POSTAGE", "CARRIAGE", "MANUAL", "DOTCOM", "CHARGES", "DISCOUNT",
                        "AMAZON", "FEE"})),
    ("christmas", frozenset({"CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE"})),
    ("lighting", frozenset({"LIGHT", "LIGHTS", "LANTERN", "CANDLE", "CANDLES", "LAMP",
                            "HOLDER"})),
    ("kitchen", frozenset({"MUG", "MUGS", "CUP", "CUPS", "PLATE", "PLATES", "BOWL", "TEA",
                           "CAKE", "BAKING", "LUNCH", "JAR", "SPOON", "KITCHEN",
                           "NAPKINS", "TRAY", "TEAPOT", "CUTLERY", "JUG"})),
    ("bags", frozenset({"BAG", "BAGS", "TOTE", "PURSE", "BACKPACK"})),
    ("stationery", frozenset({"CARD", "CARDS", "WRAP", "PAPER", "NOTEBOOK", "PEN", "PENCIL",
                              "PENCILS", "STICKER", "STICKERS", "ENVELOPE", "STATIONERY"})),
    ("toys", frozenset({"TOY", "TOYS", "GAME", "DOLL", "PUZZLE", "SKITTLES", "DOMINOES",
                        "PLAYHOUSE", "SPACEBOY"})),
    ("jewellery", frozenset({"NECKLACE", "BRACELET", "EARRINGS", "RING", "DIAMANTE"})),
    ("garden", frozenset({"GARDEN", "PLANT", "WATERING", "BIRD", "POT"})),
    ("decor", frozenset({"FRAME", "SIGN", "CLOCK", "MIRROR", "HOOK", "HANGER", "DOORMAT",
                         "CUSHION", "VASE", "ORNAMENT", "DECORATION", "HEART", "WREATH",
                         "BUNTING"})),
)
_WORD = re.compile(r"[A-Z]+")
_LINE_REASONS = ("no_customer", "zero_quantity", "negative_price")


@dataclass(frozen=True)
class RetailStats:
    """What the loader read, kept and dropped, so a replay can say what it is built on.

    Attributes
    ----------
    lines_read
        Data lines in the file (header excluded).
    skipped_lines
        Lines dropped, by reason: ``no_customer``, ``zero_quantity``, ``negative_price``.
    skipped_invoices
        Invoices dropped, by reason: ``zero_total``.
    invoices
        Order events produced (one per kept invoice, cancellations included).
    customers
        Distinct customers among the produced events.
    cancellations
        Produced events for ``C`` invoices (status ``refunded``).
    first_ts, last_ts
        Time of the first and last produced event (epoch ms), None when there is none.
    """

    lines_read: int
    skipped_lines: Mapping[str, int]
    skipped_invoices: Mapping[str, int]
    invoices: int
    customers: int
    cancellations: int
    first_ts: int | None
    last_ts: int | None


def category_of(description: str) -> str | None:
    """Coarse category from a product description, or None.

    >>> category_of("WHITE HANGING HEART T-LIGHT HOLDER"), category_of("ZINC WIRE SWEETHEART")
    ('lighting', None)
    """
    words = set(_WORD.findall(description.upper()))
    for name, keywords in CATEGORY_KEYWORDS:
        if not words.isdisjoint(keywords):
            return name
    return None


def load_retail_orders(path: str | Path) -> tuple[list[dict[str, Any]], RetailStats]:
    """Read the UCI Online Retail CSV (plain or ``.gz``) into order events.

    Returns the events sorted by time and then invoice number, and the loader statistics.
    """
    with _open_text(Path(path)) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        col = {name: i for i, name in enumerate(header or ())}
        missing = {"InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                   "UnitPrice", "CustomerID"} - set(col)
        if missing:
            raise ValueError(f"{path}: not the Online Retail layout, missing {sorted(missing)}")
        invoices, lines, skipped = _group_lines(reader, col)
    events: list[dict[str, Any]] = []
    zero_total = 0
    for inv, (user_id, ts, items, amount) in invoices.items():
        total = round(abs(amount), 2)
        if total == 0:
            zero_total += 1
            continue
        cancelled = inv.startswith("C")
        events.append({
            "type": "order", "event_id": f"retail-{inv}", "user_id": user_id, "ts": ts,
            "schema_version": 1, "order_id": inv,
            "status": "refunded" if cancelled else "placed", "items": items, "total": total,
            "currency": CURRENCY, "discount": 0.0, "coupon_code": None, "payment_method": None,
        })
    events.sort(key=lambda e: (e["ts"], e["order_id"]))
    stats = RetailStats(
        lines_read=lines,
        skipped_lines=skipped,
        skipped_invoices={"zero_total": zero_total},
        invoices=len(events),
        customers=len({e["user_id"] for e in events}),
        cancellations=sum(1 for e in events if e["status"] == "refunded"),
        first_ts=events[0]["ts"] if events else None,
        last_ts=events[-1]["ts"] if events else None,
    )
    return events, stats


def write_jsonl(events: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line (gzip-compressed when ``path`` ends in ``.gz``).

    Returns the number of events written. orjson keeps a 200k-event file to about a
    second and writes non-ASCII review text as UTF-8, not escapes.
    """
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    n = 0
    with opener(p, "wb") as f:
        for ev in events:
            f.write(orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


# invoice -> (user_id, ts, items, signed total)
_Invoices = dict[str, tuple[str, int, list[dict[str, Any]], float]]


def _group_lines(reader: Iterable[list[str]], col: Mapping[str, int]
                 ) -> tuple[_Invoices, int, dict[str, int]]:
    i_inv, i_code, i_desc = col["InvoiceNo"], col["StockCode"], col["Description"]
    i_qty, i_date, i_price, i_cust = (col["Quantity"], col["InvoiceDate"], col["UnitPrice"],
                                      col["CustomerID"])
    skipped = dict.fromkeys(_LINE_REASONS, 0)
    invoices: _Invoices = {}
    times: dict[str, int] = {}
    categories: dict[str, str | None] = {}
    lines = 0
    for row in reader:
        lines += 1
        customer = row[i_cust].strip()
        if not customer:
            skipped["no_customer"] += 1
            continue
        qty = int(row[i_qty])
        if qty == 0:
            skipped["zero_quantity"] += 1
            continue
        price = float(row[i_price])
        if price < 0:
            skipped["negative_price"] += 1
            continue
        date = row[i_date]
        ts = times.get(date)
        if ts is None:
            ts = times[date] = _epoch_ms(date)
        desc = row[i_desc]
        category = categories.get(desc, "")
        if category == "":
            category = categories[desc] = category_of(desc)
        item = {"product_id": row[i_code], "category": category, "quantity": abs(qty),
                "unit_price": price}
        inv = row[i_inv]
        rec = invoices.get(inv)
        if rec is None:
            invoices[inv] = (f"c{int(float(customer))}", ts, [item], qty * price)
        else:
            user_id, first, items, amount = rec
            items.append(item)
            # An invoice keyed in across a minute boundary: it happened at its first line.
            invoices[inv] = (user_id, min(first, ts), items, amount + qty * price)
    return invoices, lines, skipped


def _epoch_ms(text: str) -> int:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
