"""R19 daily settlement per platform, derived from the ledger.

A redemption counts on the local day it was captured (count, GMV = its payable, its
discount); a clawback counts on the local day of its refund; net = discount − clawback.
"""

from __future__ import annotations

from typing import Any

from lijian.core.ledger import Ledger

FIELDS = ("count", "gmv_fen", "discount_fen", "clawback_fen", "net_subsidy_fen")


def settlement(ledger: Ledger, campaign_id: str, day: str) -> dict[str, Any]:
    b = ledger.book(campaign_id)
    sched = b.schedule
    rows: dict[str, dict[str, int]] = {
        p: dict.fromkeys(FIELDS, 0) for p in b.settings.campaign.platforms
    }
    for r in ledger.redemptions.values():
        if r.campaign_id != campaign_id or r.captured_ms is None:
            continue
        row = rows.setdefault(r.platform, dict.fromkeys(FIELDS, 0))
        if sched.local_date(r.captured_ms).isoformat() == day:
            row["count"] += 1
            row["gmv_fen"] += r.payable_fen
            row["discount_fen"] += r.discount_fen
        for f in r.refunds:
            if sched.local_date(f.ts_ms).isoformat() == day:
                row["clawback_fen"] += f.clawback_fen
    totals = dict.fromkeys(FIELDS, 0)
    platforms = []
    for platform, row in sorted(rows.items()):
        row["net_subsidy_fen"] = row["discount_fen"] - row["clawback_fen"]
        for k in FIELDS:
            totals[k] += row[k]
        platforms.append({"platform": platform, **row})
    return {"campaign_id": campaign_id, "date": day, "platforms": platforms, "totals": totals}


def settlement_csv(report: dict[str, Any]) -> str:
    """The same rows as CSV with the JSON field names (totals as platform "TOTAL")."""
    lines = [",".join(("date", "platform", *FIELDS))]
    for row in [*report["platforms"], {"platform": "TOTAL", **report["totals"]}]:
        lines.append(",".join([report["date"], row["platform"], *(str(row[k]) for k in FIELDS)]))
    return "\n".join(lines) + "\n"
