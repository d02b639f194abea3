"""R19 daily settlement per platform, as the ledger's daybook keeps it.

A redemption counts on the local day it was captured (count, GMV = its payable, its
discount); a clawback counts on the local day of its refund; net = discount − clawback.
``LedgerState.apply`` adds each capture and refund to the campaign's daybook
(:mod:`lijian.core.daybook`) when it happens, so a day's settlement is read, not summed.
"""

from __future__ import annotations

from collections.abc import Mapping

from lijian.core.book import Book
from lijian.core.daybook import FIELDS, Settlement
from lijian.core.ledger import Ledger

__all__ = ["FIELDS", "Settlement", "book_settlement", "settlement", "settlement_csv"]


def settlement(ledger: Ledger, campaign_id: str, day: str) -> Settlement:
    return book_settlement(ledger.book(campaign_id), day)


def book_settlement(b: Book, day: str) -> Settlement:
    """One campaign's settlement of ``day``: every platform of the campaign, by name."""
    return b.daybook.settlement(b.id, day, b.settings.campaign.platforms)


def settlement_csv(report: Mapping[str, object]) -> str:
    """The same rows as CSV with the JSON field names (totals as platform "TOTAL").
    ``report`` is a ``Settlement``, maybe passed on as JSON (by a gateway's sequencer)."""
    date, platforms, totals = report["date"], report["platforms"], report["totals"]
    assert isinstance(date, str) and isinstance(platforms, list) and isinstance(totals, dict)
    lines = [",".join(("date", "platform", *FIELDS))]
    for row in [*platforms, {"platform": "TOTAL", **totals}]:
        lines.append(",".join([date, row["platform"], *(str(row[k]) for k in FIELDS)]))
    return "\n".join(lines) + "\n"
