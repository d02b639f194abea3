"""R19 daily settlement per platform, as the ledger's daybook keeps it.

A redemption counts on the local day it was captured (count, GMV = its payable, its
discount); a clawback counts on the local day of its refund; net = discount − clawback.
``LedgerState.apply`` adds each capture and refund to the campaign's daybook
(:mod:`lijian.core.daybook`) when it happens, so a day's settlement is read, not summed.
"""

from __future__ import annotations

from typing import Any

from lijian.core.book import Book
from lijian.core.daybook import FIELDS
from lijian.core.ledger import Ledger

__all__ = ["FIELDS", "book_settlement", "settlement", "settlement_csv"]


def settlement(ledger: Ledger, campaign_id: str, day: str) -> dict[str, Any]:
    return book_settlement(ledger.book(campaign_id), day)


def book_settlement(b: Book, day: str) -> dict[str, Any]:
    """One campaign's settlement of ``day``: every platform of the campaign, by name."""
    return b.daybook.settlement(b.id, day, b.settings.campaign.platforms)


def settlement_csv(report: dict[str, Any]) -> str:
    """The same rows as CSV with the JSON field names (totals as platform "TOTAL")."""
    lines = [",".join(("date", "platform", *FIELDS))]
    for row in [*report["platforms"], {"platform": "TOTAL", **report["totals"]}]:
        lines.append(",".join([report["date"], row["platform"], *(str(row[k]) for k in FIELDS)]))
    return "\n".join(lines) + "\n"
