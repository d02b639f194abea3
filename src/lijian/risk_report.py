"""``GET /v1/campaigns/{id}/risk?date=…``: a page of one campaign day's risk flags, as
the ledger holds them (core/risk.py), in the order they were raised."""

from __future__ import annotations

from lijian.core.ledger import Ledger
from lijian.core.risk import flag_view
from lijian.core.views import iso
from lijian.jsonish import Json


def risk_report(ledger: Ledger, campaign_id: str, day: str, after: int, limit: int) -> Json:
    """Flags ``after+1 …`` of the day, at most ``limit``; ``next_after`` is the ``after``
    of the next page, None on the last (a page of ``limit`` may be the last as well)."""
    b = ledger.book(campaign_id)  # CampaignNotFound: 404
    page = ledger.risk.page(campaign_id, day, after, limit)
    tz = b.settings.tz
    flags = [{**flag_view(e), "raised_at": iso(e.ts_ms, tz)} for e in page]
    return {
        "campaign_id": campaign_id,
        "date": day,
        "flags": flags,
        "next_after": after + len(page) if len(page) == limit else None,
    }
