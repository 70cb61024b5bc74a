"""The UCI Online Retail loader, on the real file: counts, contracts, order, totals."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import msgspec
import orjson
import pytest

from streams.contracts.events import OrderEvent
from streams.sim.retail import category_of, load_retail_orders, write_jsonl

DATA = Path("/work/shared/data/online_retail_uci.csv.gz")
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="UCI Online Retail file not present")


@pytest.fixture(scope="module")
def loaded():
    return load_retail_orders(DATA)


def test_stats_match_the_published_figures(loaded):
    events, stats = loaded
    assert stats.lines_read == 541_909
    # ~25 % of lines carry no CustomerID; no line with a customer has quantity 0 or a
    # negative price in this release (the bad-debt adjustments have no customer).
    assert stats.skipped_lines == {"no_customer": 135_080, "zero_quantity": 0,
                                   "negative_price": 0}
    assert stats.skipped_invoices == {"zero_total": 4}
    # The README's 4,372 customers include one whose only invoices total 0.
    assert stats.customers == 4_371
    assert stats.invoices == len(events) == 22_186
    assert stats.cancellations == 3_654
    assert (stats.first_ts, stats.last_ts) == (1_291_191_960_000, 1_323_435_000_000)


def test_every_event_is_a_valid_order_sorted_by_time_then_invoice(loaded):
    events, _ = loaded
    keys = [(e["ts"], e["order_id"]) for e in events]
    assert keys == sorted(keys)
    assert len({e["event_id"] for e in events}) == len(events)
    for ev in events:
        order = msgspec.convert(ev, OrderEvent, strict=True)
        assert order.currency == "GBP" and order.total > 0
        assert order.event_id == f"retail-{order.order_id}"
        assert order.status == ("refunded" if order.order_id.startswith("C") else "placed")
        assert ev["user_id"].startswith("c") and ev["user_id"][1:].isdigit()


def test_invoice_total_equals_the_sum_of_its_lines(loaded):
    events, _ = loaded
    lines = []
    with gzip.open(DATA, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["InvoiceNo"] == "536365":
                lines.append(row)
            elif lines:
                break
    expected = round(sum(int(r["Quantity"]) * float(r["UnitPrice"]) for r in lines), 2)
    [ev] = [e for e in events if e["order_id"] == "536365"]
    assert ev["total"] == expected
    assert ev["user_id"] == "c17850" and ev["ts"] == 1_291_191_960_000  # 2010-12-01 08:26Z
    assert [i["product_id"] for i in ev["items"]] == [r["StockCode"] for r in lines]


def test_cancellations_are_refunds_with_positive_amounts(loaded):
    events, _ = loaded
    refunds = [e for e in events if e["status"] == "refunded"]
    assert refunds and all(e["order_id"].startswith("C") for e in refunds)
    assert all(i["quantity"] >= 1 for e in refunds for i in e["items"])


def test_category_guess():
    assert category_of("WHITE HANGING HEART T-LIGHT HOLDER") == "lighting"
    assert category_of("PAPER CHAIN KIT 50'S CHRISTMAS") == "christmas"
    assert category_of("POSTAGE") == "fees"
    assert category_of("ZINC WIRE SWEETHEART") is None


@pytest.mark.parametrize("name", ["orders.jsonl", "orders.jsonl.gz"])
def test_write_jsonl_round_trips(loaded, tmp_path, name):
    events, _ = loaded
    path = tmp_path / name
    assert write_jsonl(events[:100], path) == 100
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    assert [orjson.loads(line) for line in raw.splitlines()] == events[:100]
