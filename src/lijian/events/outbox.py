"""The transactional outbox: what the writer puts into its next commit.

The writer calls :meth:`Outbox.for_commit` with the batch's entries, on the loop, right
before the commit: it returns the events that batch caused (thresholds, sold out), the
spike and audit events waiting since the last commit, and the receivers' cursors that
moved. They are written in the batch's transaction; after it, :meth:`committed` wakes
the delivery task. Everything here runs on the engine's loop thread (no locks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from lijian.core.entries import AmendmentApplied, AnyEntry, GroupFull
from lijian.core.identity import GROUP_SIZE_MAX
from lijian.core.ledger import Ledger
from lijian.core.settings import Settings
from lijian.events.changes import change_events
from lijian.events.model import EventType, NewEvent, StoredEvent, event_id
from lijian.events.risk import risk_events
from lijian.events.spikes import SpikeDetector
from lijian.events.watch import AlertWatch
from lijian.store import Store

EVENTS_PAGE_MAX = 500  # one page of GET /v1/admin/events
PENDING_MAX = 10_000  # events waiting for a commit (spikes, audits); beyond: dropped, counted
RESTORE_PAGE = 1_000


class Outbox:
    def __init__(self, settings: Iterable[Settings]) -> None:
        settings = list(settings)
        self.watch = AlertWatch(settings)
        self.spikes = SpikeDetector(settings)
        self.pending: list[NewEvent] = []
        self.dropped = 0
        self.cursors: dict[str, int] = {}  # receiver → last delivered event seq (in memory)
        self._moved: dict[str, int] = {}  # cursors not yet committed
        self.wakers: list[asyncio.Event] = []
        self.committed_events = 0

    def restore(self, events: Iterable[StoredEvent], cursors: dict[str, int]) -> None:
        for ev in events:
            self.watch.restore(ev)
        self.cursors = dict(cursors)

    def counts_declines(self, campaign_id: str) -> bool:
        """Whether ``declined`` counts this campaign's declines (its spike alert is on):
        a decline answered from memory skips the call, its codes and clock, otherwise."""
        return self.spikes.on and bool(self.spikes.factor.get(campaign_id))

    def declined(self, campaign_id: str, codes: Iterable[str], now_ms: int) -> None:
        if self.spikes.on:
            self.spikes.declined(campaign_id, codes, now_ms)

    def add(self, event: NewEvent) -> None:
        if len(self.pending) >= PENDING_MAX:
            self.dropped += 1
            return
        self.pending.append(event)

    def audit_failed(self, campaign_id: str, problems: list[str], now_ms: int) -> None:
        data = {"violations": problems[:20], "count": len(problems)}
        self.add(NewEvent(campaign_id, EventType.AUDIT_FAILED, now_ms, data))

    def ack(self, receiver: str, seq: int) -> None:
        """A receiver got every event up to ``seq`` (committed with the next batch)."""
        if seq > self.cursors.get(receiver, 0):
            self.cursors[receiver] = seq
            self._moved[receiver] = seq

    def learn(self, s: Settings) -> None:
        """A campaign created over the API (lijian.core.launch): its alert settings."""
        cid = s.campaign.id
        self.watch.tranche_pct[cid] = s.alerts.tranche_remaining_pct
        self.watch.budget_pct[cid] = s.alerts.budget_remaining_pct
        self.spikes.factor[cid] = s.alerts.decline_spike_factor
        self.spikes.on = any(self.spikes.factor.values())

    def for_commit(
        self, ledger: Ledger, entries: list[AnyEntry], now_ms: int
    ) -> tuple[list[NewEvent], list[tuple[str, int]]]:
        for e in entries:
            if isinstance(e, AmendmentApplied) and e.campaign_id not in self.spikes.factor:
                self.learn(ledger.books[e.campaign_id].settings)
        events = self.watch.observe(ledger, now_ms) if entries else []
        events += group_full_events(entries)
        events += change_events(ledger, entries)  # in the commit of the changes' entries
        events += risk_events(entries)
        events += self.spikes.check(now_ms)
        if self.pending:
            events += self.pending
            self.pending = []
        moved = list(self._moved.items())
        self._moved.clear()
        return events, moved

    def committed(self, n_events: int) -> None:
        self.committed_events += n_events
        if n_events:
            for w in self.wakers:
                w.set()


def group_full_events(entries: list[AnyEntry]) -> list[NewEvent]:
    """``identity.group_full`` for each GroupFull entry of the batch: the ledger writes one
    per group, so the event is sent once per group (in the same commit as the entry)."""
    out: list[NewEvent] = []
    for e in entries:
        if isinstance(e, GroupFull):
            data = {"person_key": e.group_key, "declined_person_id": e.person_id,
                    "size": e.size, "group_size_max": GROUP_SIZE_MAX}  # fmt: skip
            out.append(NewEvent(e.campaign_id, EventType.IDENTITY_GROUP_FULL, e.ts_ms, data))
    return out


def open_outbox(settings: Iterable[Settings], store: Store) -> Outbox:
    """The outbox with its state rebuilt from the stored events and cursors."""
    box = Outbox(settings)

    def stored() -> Iterator[StoredEvent]:
        after = 0
        while page := store.read_events(after, RESTORE_PAGE):
            yield from page
            after = page[-1].seq

    box.restore(stored(), store.read_cursors())
    return box


def events_page(
    store: Store, after_seq: int, limit: int, tz_of: Callable[[str], ZoneInfo], node: str = ""
) -> dict[str, object]:
    """``GET /v1/admin/events?after=``: the bodies after ``after_seq``, and where to go on
    (``node``: a shard's, named in its ids as in its webhooks')."""
    rows = store.read_events(after_seq, min(limit, EVENTS_PAGE_MAX))
    full = len(rows) == min(limit, EVENTS_PAGE_MAX)
    return {
        "events": [ev.body(tz_of(ev.campaign_id), node) for ev in rows],
        "next_after": event_id(rows[-1].seq, node) if full else None,
    }
