"""R19 daily settlement per platform, derived from the ledger.

A redemption counts on the local day it was captured (count, GMV = its payable, its
discount); a clawback counts on the local day of its refund; net = discount − clawback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lijian.core.book import Book, Redemption
from lijian.core.ledger import Ledger

FIELDS = ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen")


class SettlementSum:
    """The settlement of one campaign day, summed over redemptions given in parts (the
    engine sums a large ledger in slices between requests, lijian/reports.py)."""

    def __init__(self, b: Book, day: str) -> None:
        self.b = b
        self.day = day
        self.rows: dict[str, dict[str, int]] = {
            p: dict.fromkeys(FIELDS, 0) for p in b.settings.campaign.platforms
        }

    def add(self, redemptions: Iterable[Redemption]) -> None:
        cid, day, local, rows = self.b.id, self.day, self.b.schedule.local_date, self.rows
        for r in redemptions:
            if r.campaign_id != cid or r.captured_ms is None:
                continue
            row = rows.setdefault(r.platform, dict.fromkeys(FIELDS, 0))
            if local(r.captured_ms).isoformat() == day:
                row["count"] += 1
                row["gmv_fen"] += r.payable_fen
                row["discount_fen"] += r.discount_fen
            for f in r.refunds:
                if local(f.ts_ms).isoformat() == day:
                    row["clawback_fen"] += f.clawback_fen

    def report(self) -> dict[str, Any]:
        totals = dict.fromkeys(FIELDS, 0)
        platforms = []
        for platform, sums in sorted(self.rows.items()):
            row = {**sums, "net_subsidy_fen": sums["discount_fen"] - sums["clawback_fen"]}
            for k in FIELDS:
                totals[k] += row[k]
            platforms.append({"platform": platform, **row})
        return {"campaign_id": self.b.id, "date": self.day, "platforms": platforms,
                "totals": totals}  # fmt: skip


def settlement(ledger: Ledger, campaign_id: str, day: str) -> dict[str, Any]:
    s = SettlementSum(ledger.book(campaign_id), day)
    s.add(ledger.redemptions.values())
    return s.report()


def settlement_csv(report: dict[str, Any]) -> str:
    """The same rows as CSV with the JSON field names (totals as platform "TOTAL")."""
    lines = [",".join(("date", "platform", *FIELDS))]
    for row in [*report["platforms"], {"platform": "TOTAL", **report["totals"]}]:
        lines.append(",".join([report["date"], row["platform"], *(str(row[k]) for k in FIELDS)]))
    return "\n".join(lines) + "\n"
