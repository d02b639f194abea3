"""``risk.flagged``: one event per flag (core/risk.py), in the commit of its entry, so a
flag acknowledged is a flag the receivers will hear of, after a kill -9 as well."""

from __future__ import annotations

from lijian.core.entries import AnyEntry, RiskFlagged
from lijian.core.risk import flag_view
from lijian.events.model import EventType, NewEvent


def risk_events(entries: list[AnyEntry]) -> list[NewEvent]:
    return [
        NewEvent(e.campaign_id, EventType.RISK_FLAGGED, e.ts_ms, flag_view(e))
        for e in entries
        if isinstance(e, RiskFlagged)
    ]
