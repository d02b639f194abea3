"""The events of a live campaign's operator changes: one per change entry of a batch.

Recorded in the same commit as the entries that made them (``Outbox.for_commit``), so a
receiver hears of a pause, an approval or a block exactly when it took effect. ``data``
is the change as ``GET …/changes`` lists it, with its amendment or block.
"""

from __future__ import annotations

from collections.abc import Iterable

from lijian.core.change_views import amendment_view, block_view, change_view
from lijian.core.entries import CHANGE_ENTRIES, AnyEntry
from lijian.core.launch import campaign_tz
from lijian.core.ledger import Ledger
from lijian.core.status import ChangeKind
from lijian.events.model import EventType, NewEvent

_TYPES = {
    ChangeKind.PAUSE: EventType.CAMPAIGN_PAUSED,
    ChangeKind.RESUME: EventType.CAMPAIGN_RESUMED,
    ChangeKind.AMENDMENT_PROPOSED: EventType.AMENDMENT_PROPOSED,
    ChangeKind.AMENDMENT_APPLIED: EventType.AMENDMENT_APPLIED,
    ChangeKind.AMENDMENT_REJECTED: EventType.AMENDMENT_REJECTED,
    ChangeKind.BLOCK_ADDED: EventType.BLOCK_ADDED,
    ChangeKind.BLOCK_LIFTED: EventType.BLOCK_LIFTED,
}


def change_events(ledger: Ledger, entries: Iterable[AnyEntry]) -> list[NewEvent]:
    out: list[NewEvent] = []
    ch = ledger.changes
    for e in entries:
        if not isinstance(e, CHANGE_ENTRIES):
            continue
        c = ch.log[int(e.change_id.removeprefix("ch_")) - 1]
        assert c.id == e.change_id
        tz = campaign_tz(ledger, c.campaign_id)  # a new campaign's proposal has no book
        data = change_view(c, tz)
        if c.ref in ch.amendments:
            data["amendment"] = amendment_view(ch.amendments[c.ref], tz)
        elif c.ref in ch.blocks:
            data["block"] = block_view(ch.blocks[c.ref], tz)
        out.append(NewEvent(c.campaign_id, _TYPES[c.kind], c.at_ms, data))
    return out
