"""Snapshots: the whole ledger state at one entry sequence number, for fast restarts.

Replaying a million entries costs seconds of Python; decoding the state they produced
costs a fraction of that, because msgspec decodes the state Structs in C. A snapshot is
only a cache of the replay: entries stay the source of truth, recovery is "latest
snapshot + the entries after it", and ``lijian audit`` still replays from zero and checks
that the snapshot equals its replay.
"""

from __future__ import annotations

import heapq
from itertools import chain, compress
from operator import attrgetter

import msgspec

from lijian.core.book import Book, Draw, Tranche, WindowRecord
from lijian.core.changes import Changes, ChangesState
from lijian.core.daybook import DaybookState
from lijian.core.detectors import CampaignRisk
from lijian.core.draw import commitment
from lijian.core.entries import FlagReviewed, ItemsSubsidised, RiskFlagged
from lijian.core.identity import IdentityGroups, IdentityState
from lijian.core.ledger import Ledger
from lijian.core.person_columns import PersonColumns
from lijian.core.person_columns import from_columns as persons_from_columns
from lijian.core.person_columns import to_columns as persons_to_columns
from lijian.core.redemption import Redemption, Refunded
from lijian.core.redemption_columns import (
    RedemptionColumns,
    active_columns,
    expiries,
    from_columns,
    per_where,
    to_columns,
)
from lijian.core.status import (
    AmendmentKind,
    AmendmentStatus,
    KeyUse,
)
from lijian.core.vouchers import Voucher

# 2: compact records (a person's counts per day in fields, fingerprints as bytes, lines
# and refunds as tuples). 3: packed redemptions (lijian.core.redemption: shared Where,
# payable, discount and fingerprint as one bytes, a one-unit order's line as its SKU).
# 4: the redemptions and each book's persons as columns (lijian.core.redemption_columns,
# person_columns), a redemption naming its person by place among the books' persons.
# A snapshot of another version is not read: the start replays from zero instead
# (SnapshotOutdated), as for any snapshot that does not fit.
SNAPSHOT_VERSION = 4


class BookState(msgspec.Struct, array_like=True):
    campaign_id: str
    tranches: list[Tranche]
    persons: PersonColumns
    lost_fen: int
    next_transition: int
    # Fair release and identity (defaults: snapshots written before they existed).
    # (day, seed, at): seeds of snapshots written before commitments (now always empty).
    draws: list[tuple[str, str, int]] = msgspec.field(default_factory=list)
    identity: IdentityState | None = None
    windows: list[WindowRecord] = msgspec.field(default_factory=list)
    draw_records: list[Draw] = msgspec.field(default_factory=list)
    # Operator changes (lijian.core.changes); defaults: snapshots from before them.
    paused: bool = False
    budget_delta_fen: int = 0
    withdrawn_fen: int = 0
    last_day: str | None = None
    # The daybook (lijian.core.daybook); None: a snapshot from before it, rebuilt on
    # restore from the redemptions (see rebuild_daybook).
    daybook: DaybookState | None = None


class LedgerState(msgspec.Struct, array_like=True):
    version: int
    seq: int
    now_ms: int
    entries_applied: int
    books: list[BookState]
    redemptions: RedemptionColumns
    key_id: str | None = None  # the LedgerKeyed entry's key id
    changes: ChangesState | None = None
    manual_clock_ms: int | None = None  # (default: snapshots from before ClockMoved)
    risk_flags: list[RiskFlagged] = msgspec.field(default_factory=list)  # in order raised
    vouchers: list[Voucher] = msgspec.field(default_factory=list)  # claimed, in order made
    items: list[ItemsSubsidised] = msgspec.field(default_factory=list)  # in order applied
    risk_index: dict[str, CampaignRisk] = msgspec.field(default_factory=dict)  # detectors.py
    flag_reviews: list[FlagReviewed] = msgspec.field(default_factory=list)  # in order done


class _Head(msgspec.Struct, array_like=True):
    """A snapshot with its books and redemptions left undecoded (``peek``)."""

    version: int
    seq: int
    now_ms: int
    entries_applied: int
    books: msgspec.Raw
    redemptions: msgspec.Raw
    key_id: str | None = None  # the fields after it are not read (msgspec skips them)


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[LedgerState] = msgspec.msgpack.Decoder(LedgerState)
_head_decoder: msgspec.msgpack.Decoder[_Head] = msgspec.msgpack.Decoder(_Head)


def peek_key_id(blob: bytes) -> tuple[int, str | None]:
    """(seq, key id) of a snapshot without building its state: what a start checks its
    key against before the engine recovers (lijian.ledger_key.preflight)."""
    head = _head_decoder.decode(blob)
    return head.seq, head.key_id


def peek_version(blob: bytes) -> int:
    """The format version of a snapshot, read without building its state."""
    return _head_decoder.decode(blob).version


class SnapshotMismatch(ValueError):
    """The snapshot does not fit the loaded campaigns: recover by replay instead."""


class SnapshotOutdated(SnapshotMismatch):
    """The snapshot was written in another format (its version): recover by replay."""


def encode_snapshot(ledger: Ledger, seq: int) -> bytes:
    assert not ledger._pending, "snapshot only between batches, when everything is applied"
    books = [
        BookState(
            cid,
            list(b.tranches.values()),
            persons_to_columns(list(b.persons.values())),
            b.lost_fen,
            b.next_transition,
            [],
            b.identity.to_state() if len(b.identity) else None,
            list(b.windows.values()),
            list(b.draws.values()),
            b.paused,
            b.budget_delta_fen,
            b.withdrawn_fen,
            b.last_day,
            b.daybook.to_state(),
        )
        for cid, b in ledger.books.items()
    ]
    places: dict[str, dict[str, int]] = {}
    offset = 0
    for bs in books:  # a person's place among every book's persons, in the books' order
        places[bs.campaign_id] = {pid: offset + i for i, pid in enumerate(bs.persons.ids)}
        offset += len(bs.persons.ids)
    state = LedgerState(
        SNAPSHOT_VERSION,
        seq,
        ledger.now_ms,
        ledger.entries_applied,
        books,
        to_columns(list(ledger.redemptions.values()), places),
        ledger.key_id,
        ledger.changes.to_state() if ledger.changes.log else None,
        ledger.manual_clock_ms,
        ledger.risk.all(),
        list(ledger.vouchers.by_id.values()),
        ledger.items.to_state(),
        ledger.detectors.campaigns,
        list(ledger.risk.reviews.values()),
    )
    return _encoder.encode(state)


def rebuild_daybook(b: Book, redemptions: list[Redemption]) -> None:
    """A snapshot from before the daybook: its settlement and holds per day again from
    the redemptions, through the daybook's own methods (what the entries did). Burn-down
    points and first sell-outs before the snapshot are not in the redemptions: the
    dashboard shows them from the next entry on."""
    book = b.daybook
    for r in redemptions:  # in the order they were placed
        if r.campaign_id != b.id:
            continue
        book.held(r.day, r.created_ms, r.discount_fen)
        if r.captured_ms is not None:
            book.captured(r.captured_ms, r.platform, r.payable_fen, r.discount_fen)
        for f in r.refunds:
            book.clawed_back(f.ts_ms, r.platform, f.clawback_fen)


def restore_snapshot(ledger: Ledger, blob: bytes) -> int:
    """Load a snapshot into a freshly built ledger; return the seq it was taken at."""
    assert not ledger.redemptions and ledger.entries_applied == 0, "restore into a fresh ledger"
    # The version is checked after the decode, not peeked before it: a peek parses the
    # whole blob once more (0.12 s at a million redemptions). Another version's records
    # do not decode, or decode into a state whose version says so.
    try:
        state = _decoder.decode(blob)
    except msgspec.ValidationError:
        version = peek_version(blob)
        if version != SNAPSHOT_VERSION:
            raise SnapshotOutdated(
                f"snapshot version {version}, expected {SNAPSHOT_VERSION}"
            ) from None
        raise
    if state.version != SNAPSHOT_VERSION:
        raise SnapshotOutdated(f"snapshot version {state.version}, expected {SNAPSHOT_VERSION}")
    if state.changes is not None:
        ledger.changes = Changes.from_state(state.changes)
        # Campaigns created over the API: their books come from the ledger, not a file.
        for a in ledger.changes.amendments.values():
            if a.kind == AmendmentKind.CAMPAIGN and a.status == AmendmentStatus.APPLIED:
                ledger.open_campaign(a.id)
    for bs in state.books:
        b = ledger.books.get(bs.campaign_id)
        if b is None:
            raise SnapshotMismatch(f"snapshot has campaign {bs.campaign_id!r}, not loaded now")
        if [t.day for t in bs.tranches] != b.order_days:
            raise SnapshotMismatch(f"campaign {bs.campaign_id!r}: tranche days differ")
        b.tranches = {t.day: t for t in bs.tranches}
        b.recount_unreleased()
        persons = persons_from_columns(bs.persons)
        b.persons = dict(zip(bs.persons.ids, persons, strict=True))
        b.lost_fen = bs.lost_fen
        b.next_transition = bs.next_transition
        b.draws = {day: Draw(day, commitment(seed), at, seed, at) for day, seed, at in bs.draws}
        b.draws.update((d.day, d) for d in bs.draw_records)
        b.unrevealed = sorted(d.day for d in b.draws.values() if d.seed is None)
        if bs.identity is not None:
            b.identity = IdentityGroups.from_state(bs.identity, b.figures_of)
        b.windows = {w.day: w for w in bs.windows}
        b.paused, b.budget_delta_fen = bs.paused, bs.budget_delta_fen
        b.withdrawn_fen, b.last_day = bs.withdrawn_fen, bs.last_day
        if bs.daybook is not None:
            b.daybook.restore(bs.daybook)
        if bs.last_day is not None:
            b.order_days = [d for d in b.order_days if d <= bs.last_day]
        for p in compress(persons, bs.persons.restores):  # the few with restores pending
            for pr in p.restores or ():
                ledger._restores.append((pr, bs.campaign_id, p.person_id))
    heapq.heapify(ledger._restores)
    # Columns, then dicts filled from them in C: this runs once per redemption ever
    # made (a million at a city's size, every restart).
    cols = state.redemptions
    # (The persons' ids, the strings their records hold: a redemption shares its person's.)
    reds = from_columns(cols, list(chain.from_iterable(bs.persons.ids for bs in state.books)))
    ledger.redemptions = dict(zip(cols.ids, reds, strict=True))
    ledger.active_orders.fill(*active_columns(cols, attrgetter("platform")))
    ledger.idempotency.add_holds(per_where(cols, attrgetter("client_id")), cols.keys, cols.ids)
    ledger.idempotency.update(
        ((f.client_id, f.idempotency_key), (KeyUse.REFUND, r.id, f.refund_id))
        for r in reds
        if type(r.closed) is Refunded  # (a record's refunds: read only where there are)
        for f in r.refunds
    )
    ledger.vouchers.restore(state.vouchers)
    ledger.idempotency.update(
        ((v.client_id, v.idempotency_key), (KeyUse.CLAIM, v.id, ""))
        for v in state.vouchers
        if v.restored_from is None
    )
    for bs in state.books:
        if bs.daybook is None:
            rebuild_daybook(ledger.books[bs.campaign_id], reds)
    ledger._expiries = expiries(cols)
    heapq.heapify(ledger._expiries)
    ledger.now_ms = state.now_ms
    ledger.manual_clock_ms = state.manual_clock_ms
    for flag in state.risk_flags:
        ledger.risk.apply(flag)
    ledger.items.restore(state.items, ledger.redemptions)
    for review in state.flag_reviews:
        ledger.risk.review(review)
    ledger.detectors.restore(state.risk_index)
    ledger.entries_applied = state.entries_applied
    ledger.key_id = state.key_id
    ledger._next_due_ms = 0
    return state.seq
