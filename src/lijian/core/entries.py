"""Ledger entries: the immutable facts every balance is derived from.

An entry records a *decision already taken* (a hold of 3,720 fen from the 2025-02-12
tranche for person p-1), never a request. Replaying the entries from zero through
``Ledger.apply`` rebuilds every balance exactly, with no rule evaluated again: that is
what makes restart and ``lijian audit`` trustworthy (beancount, TigerBeetle).

Entries are msgspec Structs encoded as compact msgpack arrays (``array_like``) so that
writing and replaying a million of them stays cheap.
"""

from __future__ import annotations

import msgspec

from lijian.core.status import EntryKind, RefundKind, ReleaseReason


class Entry(msgspec.Struct, frozen=True, array_like=True, tag=True):
    ts_ms: int


class TrancheOpened(Entry, frozen=True, array_like=True, tag=EntryKind.OPEN.value):
    campaign_id: str
    day: str
    amount_fen: int  # base + money that flowed in before the open


class TrancheClosed(Entry, frozen=True, array_like=True, tag=EntryKind.CLOSE.value):
    campaign_id: str
    day: str
    leftover_fen: int
    to_day: str | None  # rollover target; None = expired (leftover = "expire" or last day)


class SoldOut(Entry, frozen=True, array_like=True, tag=EntryKind.SOLD_OUT.value):
    campaign_id: str
    day: str


class HoldPlaced(Entry, frozen=True, array_like=True, tag=EntryKind.HOLD.value):
    campaign_id: str
    redemption_id: str
    day: str
    person_id: str
    platform: str
    order_id: str
    payable_fen: int
    discount_fen: int
    capped: bool
    expires_at_ms: int
    # (sku, quantity, line payable fen): what partial refunds by item are valued against
    lines: list[tuple[str, int, int]]
    client_id: str
    idempotency_key: str
    fingerprint: str


class HoldCaptured(Entry, frozen=True, array_like=True, tag=EntryKind.CAPTURE.value):
    redemption_id: str


class HoldReleased(Entry, frozen=True, array_like=True, tag=EntryKind.RELEASE.value):
    redemption_id: str
    why: ReleaseReason
    # Where the money went when its tranche had already closed (R4 decision):
    # a later tranche, or None = back to its own open tranche / lost when closed.
    to_day: str | None


class RefundRecorded(Entry, frozen=True, array_like=True, tag=EntryKind.REFUND.value):
    redemption_id: str
    refund_id: str
    kind: RefundKind
    returned_payable_fen: int
    card_refund_fen: int
    clawback_fen: int
    quota_restore_fen: int
    quota_restore_at_ms: int | None
    clawback_to_day: str | None  # None = forfeit (or same tranche when open, see to_same)
    clawback_to_same: bool
    returned_lines: list[tuple[str, int]]
    client_id: str
    idempotency_key: str
    fingerprint: str


class QuotaRestored(Entry, frozen=True, array_like=True, tag=EntryKind.RESTORE.value):
    redemption_id: str
    refund_id: str
    amount_fen: int


class DrawSeeded(Entry, frozen=True, array_like=True, tag=EntryKind.DRAW_SEEDED.value):
    """The seed of a day's admission window, drawn before the open (lijian.core.draw)."""

    campaign_id: str
    day: str
    seed: str  # 64 lower-case hex characters; public once the window has ended


class WindowDecided(Entry, frozen=True, array_like=True, tag=EntryKind.WINDOW_DECIDED.value):
    """An admission window was decided (its holds precede this entry, in draw order)."""

    campaign_id: str
    day: str
    arrivals: list[tuple[str, str, str]]  # (client id, Idempotency-Key, person id), arrival order


class IdentifiersSeen(Entry, frozen=True, array_like=True, tag=EntryKind.IDENTIFIERS_SEEN.value):
    """A person presented identifiers of ``[identity] link_by`` not yet in its group:
    their values become its own, or link it with the groups that own them."""

    campaign_id: str
    person_id: str
    identifiers: list[tuple[str, str]]  # (kind, value) as the channel sent them
    linked: list[str]  # persons newly in the same group (for readers; apply recomputes)


class ClockMoved(Entry, frozen=True, array_like=True, tag=EntryKind.CLOCK_MOVED.value):
    """The operator moved the manual clock to ``ts_ms`` (rehearsals, ``--clock manual``).
    An entry so that a restart or a takeover shows the time clients were answered with,
    not the time the process was started with (the ledger's clock wins)."""


AnyEntry = (
    TrancheOpened
    | TrancheClosed
    | SoldOut
    | HoldPlaced
    | HoldCaptured
    | HoldReleased
    | RefundRecorded
    | QuotaRestored
    | DrawSeeded
    | WindowDecided
    | IdentifiersSeen
    | ClockMoved
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyEntry] = msgspec.msgpack.Decoder(AnyEntry)


def encode(entry: AnyEntry) -> bytes:
    return _encoder.encode(entry)


def decode(blob: bytes) -> AnyEntry:
    return _decoder.decode(blob)
