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

from lijian.core.status import (
    AmendmentKind,
    BlockKind,
    EntryKind,
    FlagCode,
    RefundKind,
    ReleaseReason,
    ReviewAction,
)


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
    """The seed of a day's admission window, drawn before the open, in plain text: what
    ledgers wrote before ``DrawCommitted`` (still replayed; never written now)."""

    campaign_id: str
    day: str
    seed: str  # 64 lower-case hex characters; public once the window has ended


class WindowDecided(Entry, frozen=True, array_like=True, tag=EntryKind.WINDOW_DECIDED.value):
    """An admission window was decided (its holds precede this entry, in draw order)."""

    campaign_id: str
    day: str
    arrivals: list[tuple[str, str, str]]  # (client id, Idempotency-Key, person id), arrival order


class DrawCommitted(Entry, frozen=True, array_like=True, tag=EntryKind.DRAW_COMMITTED.value):
    """The commitment to a day's draw seed, stored before the open. The seed itself is
    derived from the ledger key (lijian.core.draw.derive_seed) and is in no entry until
    ``DrawRevealed``."""

    campaign_id: str
    day: str
    commitment: str  # hex(SHA-256(seed as ASCII))


class DrawRevealed(Entry, frozen=True, array_like=True, tag=EntryKind.DRAW_REVEALED.value):
    """The seed of a day's draw, once its admission window has ended (apply checks it
    against the commitment)."""

    campaign_id: str
    day: str
    seed: str  # 64 lower-case hex characters


class IdentifiersSeen(Entry, frozen=True, array_like=True, tag=EntryKind.IDENTIFIERS_SEEN.value):
    """A person presented identifiers of ``[identity] link_by`` not yet in its group:
    their values become its own, or link it with the groups that own them."""

    campaign_id: str
    person_id: str
    # (kind, value): keyed by the engine (HMAC under the ledger key, never the value the
    # channel sent); ledgers from before the key hold the values as sent.
    identifiers: list[tuple[str, str]]
    # The keys of the groups it joined (for readers; apply recomputes). Ledgers from
    # before group totals list every person newly in the group here instead.
    linked: list[str]


class GroupFull(Entry, frozen=True, array_like=True, tag=EntryKind.GROUP_FULL.value):
    """A group declined a new member: it would have held more than GROUP_SIZE_MAX
    persons (lijian.core.identity). Written once per group, for the operator."""

    campaign_id: str
    group_key: str  # the first person of the group
    person_id: str  # the person it declined
    size: int  # the size the group would have had


class LedgerKeyed(Entry, frozen=True, array_like=True, tag=EntryKind.LEDGER_KEYED.value):
    """The key that keys this ledger's identifiers and derives its draw seeds, by its
    id (an HMAC of a constant under it, lijian.core.keyed.key_id): a start with
    another key is refused. The key itself is never in the ledger."""

    key_id: str


# ---- Running a live campaign (lijian.core.changes): every operator change is an entry.
# Each carries the operator key that made it and its reason; ids are given by the writer.


class CampaignPaused(Entry, frozen=True, array_like=True, tag=EntryKind.PAUSED.value):
    campaign_id: str
    change_id: str
    by: str  # operator key id
    reason: str


class CampaignResumed(Entry, frozen=True, array_like=True, tag=EntryKind.RESUMED.value):
    campaign_id: str
    change_id: str
    by: str
    reason: str


class AmendmentProposed(
    Entry, frozen=True, array_like=True, tag=EntryKind.AMENDMENT_PROPOSED.value
):
    campaign_id: str
    amendment_id: str
    change_id: str
    kind: AmendmentKind
    by: str
    reason: str
    delta_fen: int  # budget: the change (≠ 0); end: 0
    days: list[str] | None  # budget: the listed days, None = "remaining"
    last_date: str | None  # end: the new last day


class AmendmentApplied(Entry, frozen=True, array_like=True, tag=EntryKind.AMENDMENT_APPLIED.value):
    """A second operator approved a proposed amendment and it took effect at once."""

    campaign_id: str
    amendment_id: str
    change_id: str
    by: str
    reason: str
    split: list[tuple[str, int]]  # budget: (day, fen) as decided; end: the days withdrawn, 0


class AmendmentRejected(
    Entry, frozen=True, array_like=True, tag=EntryKind.AMENDMENT_REJECTED.value
):
    campaign_id: str
    amendment_id: str
    change_id: str
    by: str
    reason: str


class BlockAdded(Entry, frozen=True, array_like=True, tag=EntryKind.BLOCK_ADDED.value):
    campaign_id: str
    block_id: str
    change_id: str
    kind: BlockKind
    person_id: str  # kind person; "" otherwise
    platform: str  # kind sku; "" otherwise
    sku: str
    by: str
    reason: str


class BlockLifted(Entry, frozen=True, array_like=True, tag=EntryKind.BLOCK_LIFTED.value):
    campaign_id: str
    block_id: str
    change_id: str
    by: str
    reason: str


class CampaignProposed(Entry, frozen=True, array_like=True, tag=EntryKind.CAMPAIGN_PROPOSED.value):
    """A new campaign proposed over the API: its settings file, as sent, is the entry's
    (approved or rejected by ``AmendmentApplied``/``AmendmentRejected`` of the same
    amendment; the book is created from this text when the approval is applied)."""

    campaign_id: str  # the new campaign's id, read from the settings
    amendment_id: str
    change_id: str
    by: str
    reason: str
    settings_toml: str


ChangeEntry = (
    CampaignPaused
    | CampaignResumed
    | AmendmentProposed
    | AmendmentApplied
    | AmendmentRejected
    | BlockAdded
    | BlockLifted
    | CampaignProposed
)
CHANGE_ENTRIES = (
    CampaignPaused,
    CampaignResumed,
    AmendmentProposed,
    AmendmentApplied,
    AmendmentRejected,
    BlockAdded,
    BlockLifted,
    CampaignProposed,
)


class ClockMoved(Entry, frozen=True, array_like=True, tag=EntryKind.CLOCK_MOVED.value):
    """The operator moved the manual clock to ``ts_ms`` (rehearsals, ``--clock manual``).
    An entry so that a restart or a takeover shows the time clients were answered with,
    not the time the process was started with (the ledger's clock wins)."""


class RiskFlagged(Entry, frozen=True, array_like=True, tag=EntryKind.RISK_FLAGGED.value):
    """A pattern of fraud seen (lijian.core.risk): for an operator to review. It decides
    nothing about money; it names what raised it."""

    campaign_id: str
    flag_id: str  # "flag-N": the ledger's N-th flag, the same on replay
    day: str  # the campaign day it is listed under
    code: FlagCode
    person_ids: list[str]
    redemption_ids: list[str]
    # (subject, figure, value): e.g. ("JD-1", "unit_price_fen", 13000),
    # ("JD-1", "reference_price_fen", 10000)
    figures: list[tuple[str, str, int]]


# ---- Claimed vouchers ([claims] mode = "claim"; decided in lijian.core.claims, applied by
# lijian.core.vouchers). A voucher's value sits in a tranche's ``voucher_fen`` from its
# claim until its order's capture, its expiry, or (part of it) an order's void.


class VoucherClaimed(Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_CLAIMED.value):
    """A person claimed a voucher: its value leaves the open tranche's available money."""

    campaign_id: str
    voucher_id: str
    day: str  # the tranche it came from
    person_id: str
    value_fen: int
    category: str | None  # [claims] per_category: the category every item must have
    valid_until_ms: int
    client_id: str
    idempotency_key: str
    fingerprint: str


class VoucherHeld(Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_HELD.value):
    """An order pays with a voucher: right before its ``HoldPlaced``, the voucher's value
    moves to the hold's (open) tranche and the discount out of the voucher into that
    tranche's available money, which the hold then takes (never the tranche's own)."""

    voucher_id: str
    redemption_id: str
    day: str  # the hold's tranche
    discount_fen: int


class VoucherUsed(Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_USED.value):
    """The order of a held voucher was captured: the part of its value the discount did
    not take goes back as ``clawback_returns_to`` says (decided here)."""

    voucher_id: str
    returned_fen: int
    to_day: str | None  # None: forfeit, or the same tranche when ``to_same``
    to_same: bool


class VoucherExpired(Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_EXPIRED.value):
    """A claimed voucher reached valid_until unused: its value goes back (re-release)."""

    voucher_id: str
    to_day: str | None
    to_same: bool


class VoucherRestored(Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_RESTORED.value):
    """A full refund gave a voucher's use back: a new voucher holding the refund's
    clawback (credited to ``day`` by the ``RefundRecorded`` right before it)."""

    campaign_id: str
    voucher_id: str  # the new voucher
    from_voucher_id: str
    day: str
    value_fen: int
    valid_until_ms: int


class VoucherRegistered(
    Entry, frozen=True, array_like=True, tag=EntryKind.VOUCHER_REGISTERED.value
):
    """[claims] allocation = "lottery": a claim in the registration period, decided by
    the day's draw (``LotteryDrawn``); no money moves yet."""

    campaign_id: str
    voucher_id: str
    day: str
    person_id: str
    value_fen: int
    category: str | None
    draw_at_ms: int
    client_id: str
    idempotency_key: str
    fingerprint: str


class LotteryDrawn(Entry, frozen=True, array_like=True, tag=EntryKind.LOTTERY_DRAWN.value):
    """The day's registrations ordered by its revealed seed (lijian.core.draw, as an
    admission window): the winners' vouchers take their value from the tranche, in that
    order, until it is used up; the others are lost. Apply recomputes the winners."""

    campaign_id: str
    day: str
    winners: list[str]  # voucher ids, in the draw's order
    valid_until_ms: int


VOUCHER_ENTRIES = (VoucherClaimed, VoucherHeld, VoucherUsed, VoucherExpired, VoucherRestored,
                   VoucherRegistered, LotteryDrawn)  # fmt: skip
VoucherEntry = (
    VoucherClaimed
    | VoucherHeld
    | VoucherUsed
    | VoucherExpired
    | VoucherRestored
    | VoucherRegistered
    | LotteryDrawn
)


class ItemsSubsidised(Entry, frozen=True, array_like=True, tag=EntryKind.ITEMS_SUBSIDISED.value):
    """A hold's trade-in items (lijian.core.items), right after its ``HoldPlaced``: the
    units it subsidises per category (counted against the person's per-category limit)
    and the device serials it subsidises (each at most once in the campaign). Both are
    free again when the hold is voided or expires or its order is refunded in full."""

    campaign_id: str
    redemption_id: str
    person_id: str
    units: list[tuple[str, int]]  # (category, units), sorted by category; [] = not counted
    # As sent: a device's serial names a device, not a person (see lijian.core.items).
    serials: list[str]


class RiskNoted(Entry, frozen=True, array_like=True, tag=EntryKind.RISK_NOTED.value):
    """What the detectors over the ledger keep of a grant that its HoldPlaced does not
    carry (lijian.core.detectors): written only when a [risk] detector needs it."""

    campaign_id: str
    person_id: str
    redemption_id: str
    # (kind, keyed value) new to this person: "device_id" or "address_text", HMAC-keyed
    # by the engine (core/keyed.py), never the raw value
    keys: list[tuple[str, str]]
    categories: list[tuple[str, int]]  # (category, payable fen of its lines)


class FlagReviewed(Entry, frozen=True, array_like=True, tag=EntryKind.FLAG_REVIEWED.value):
    """An operator's decision on a risk flag: dismissed, or its person or SKU blocked
    (the block itself is the BlockAdded entry of the same commit)."""

    campaign_id: str
    flag_id: str
    action: ReviewAction
    reason: str
    operator: str
    block_id: str | None  # the block it added (block_person, block_sku)


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
    | DrawCommitted
    | DrawRevealed
    | GroupFull
    | LedgerKeyed
    | CampaignPaused
    | CampaignResumed
    | AmendmentProposed
    | AmendmentApplied
    | AmendmentRejected
    | BlockAdded
    | BlockLifted
    | ClockMoved
    | CampaignProposed
    | RiskFlagged
    | VoucherClaimed
    | VoucherHeld
    | VoucherUsed
    | VoucherExpired
    | VoucherRestored
    | VoucherRegistered
    | LotteryDrawn
    | ItemsSubsidised
    | RiskNoted
    | FlagReviewed
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[AnyEntry] = msgspec.msgpack.Decoder(AnyEntry)


def encode(entry: AnyEntry) -> bytes:
    return _encoder.encode(entry)


def decode(blob: bytes) -> AnyEntry:
    return _decoder.decode(blob)
