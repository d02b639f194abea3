"""A live campaign's operator changes: pauses, amendments, blocks (the records and apply).

An operator steers a running campaign with changes that are ledger entries like a grant
(:mod:`lijian.core.entries`: ``CampaignPaused`` … ``BlockLifted``), decided by the one
writer in arrival order (:mod:`lijian.core.steering`) and applied here, live and on
replay. This module keeps the records the API lists (the change log, the amendments, the
blocks) and the indexes the decisions read on every hold (who and what is blocked).

Money moves only in an applied amendment: a budget amendment adds its decided split to
the listed days' tranches (an open tranche's released and available money, a scheduled
tranche's base), an "end" amendment withdraws the unreleased money of the cancelled days.
The asserts are the audit's checks on replay: no cut leaves a tranche's free money (its
available money, or a scheduled tranche's unreleased money) below zero, so nothing
granted or held is ever taken back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from lijian.core.book import OPEN, SCHEDULED, Book
from lijian.core.entries import (
    AmendmentApplied,
    AmendmentProposed,
    AmendmentRejected,
    BlockAdded,
    BlockLifted,
    CampaignPaused,
    CampaignProposed,
    CampaignResumed,
    ChangeEntry,
)
from lijian.core.status import AmendmentKind, AmendmentStatus, BlockKind, ChangeKind


class Change(msgspec.Struct, array_like=True):
    """One line of the change log: who did what, when and why."""

    id: str
    campaign_id: str
    kind: ChangeKind
    at_ms: int
    by: str
    reason: str
    ref: str  # the amendment or block it is about; "" for a pause or resume


class Amendment(msgspec.Struct, array_like=True):
    id: str
    campaign_id: str
    kind: AmendmentKind
    proposed_by: str
    proposed_ms: int
    reason: str
    delta_fen: int
    days: list[str] | None  # None = "remaining" (resolved when applied)
    last_date: str | None
    status: AmendmentStatus = AmendmentStatus.PROPOSED
    decided_by: str | None = None
    decided_ms: int | None = None
    decision_reason: str | None = None
    split: list[tuple[str, int]] = msgspec.field(default_factory=list)
    settings_toml: str | None = None  # kind campaign: the proposed settings file


class Block(msgspec.Struct, array_like=True):
    id: str
    campaign_id: str
    kind: BlockKind
    person_id: str
    platform: str
    sku: str
    by: str
    at_ms: int
    reason: str
    active: bool = True
    lifted_by: str | None = None
    lifted_ms: int | None = None
    lift_reason: str | None = None


class ChangesState(msgspec.Struct, array_like=True):
    """What a snapshot keeps of the changes (the indexes are rebuilt from the blocks)."""

    log: list[Change]
    amendments: list[Amendment]
    blocks: list[Block]


@dataclass(slots=True)
class Changes:
    """Every campaign's changes, in the order they were decided."""

    log: list[Change] = field(default_factory=list)
    amendments: dict[str, Amendment] = field(default_factory=dict)
    blocks: dict[str, Block] = field(default_factory=dict)
    # Active blocks by what they block: read by every decision (an empty dict: one lookup).
    persons: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    skus: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def next_change_id(self) -> str:
        return f"ch_{len(self.log) + 1:08d}"

    def next_amendment_id(self) -> str:
        return f"am_{len(self.amendments) + 1:06d}"

    def next_block_id(self) -> str:
        return f"bl_{len(self.blocks) + 1:06d}"

    def person_blocked(self, campaign_id: str, members: list[str]) -> bool:
        """Whether any of ``members`` (a person and those linked to it) is blocked."""
        if not self.persons:
            return False
        return any((campaign_id, m) in self.persons for m in members)

    def sku_blocked(self, campaign_id: str, platform: str, skus: list[str]) -> bool:
        if not self.skus:
            return False
        return any((campaign_id, platform, s) in self.skus for s in skus)

    def proposed_campaign(self, campaign_id: str) -> Amendment | None:
        """The pending proposal of a new campaign with this id, if any."""
        for a in self.amendments.values():
            if (a.kind == AmendmentKind.CAMPAIGN and a.campaign_id == campaign_id
                    and a.status == AmendmentStatus.PROPOSED):  # fmt: skip
                return a
        return None

    def to_state(self) -> ChangesState:
        amendments, blocks = list(self.amendments.values()), list(self.blocks.values())
        return ChangesState(list(self.log), amendments, blocks)

    @classmethod
    def from_state(cls, st: ChangesState) -> Changes:
        out = cls(list(st.log), {a.id: a for a in st.amendments}, {b.id: b for b in st.blocks})
        for bl in st.blocks:
            if bl.active:
                out._index(bl)
        return out

    def _key_list(self, bl: Block) -> list[str]:
        if bl.kind == BlockKind.PERSON:
            return self.persons.setdefault((bl.campaign_id, bl.person_id), [])
        return self.skus.setdefault((bl.campaign_id, bl.platform, bl.sku), [])

    def _index(self, bl: Block) -> None:
        self._key_list(bl).append(bl.id)

    def _unindex(self, bl: Block) -> None:
        ids = self._key_list(bl)
        ids.remove(bl.id)
        if not ids:
            if bl.kind == BlockKind.PERSON:
                del self.persons[(bl.campaign_id, bl.person_id)]
            else:
                del self.skus[(bl.campaign_id, bl.platform, bl.sku)]

    # ------------------------------------------------------------------ apply
    def apply(self, b: Book | None, e: ChangeEntry) -> None:
        """Apply one change entry to the records and to its campaign's book (``None``
        only for a new campaign's proposal or rejection: it has no book yet)."""
        cid = e.campaign_id
        if isinstance(e, CampaignProposed):
            # (``b``: a --campaign file of this id given since: LedgerState.open_campaign)
            assert e.amendment_id not in self.amendments
            self.amendments[e.amendment_id] = Amendment(
                e.amendment_id, cid, AmendmentKind.CAMPAIGN, e.by, e.ts_ms, e.reason, 0,
                None, None, settings_toml=e.settings_toml,
            )  # fmt: skip
            kind = ChangeKind.AMENDMENT_PROPOSED
            self._log(e.change_id, cid, kind, e.ts_ms, e.by, e.reason, e.amendment_id)
            return
        if isinstance(e, AmendmentRejected):
            self._decide(e.amendment_id, AmendmentStatus.REJECTED, e.by, e.ts_ms, e.reason)
            kind = ChangeKind.AMENDMENT_REJECTED
            self._log(e.change_id, cid, kind, e.ts_ms, e.by, e.reason, e.amendment_id)
            return
        assert b is not None and b.id == cid, "a change of a campaign that has no book"
        if isinstance(e, CampaignPaused):
            assert not b.paused, "pause of a paused campaign"
            b.paused = True
            self._log(e.change_id, b.id, ChangeKind.PAUSE, e.ts_ms, e.by, e.reason, "")
        elif isinstance(e, CampaignResumed):
            assert b.paused, "resume of a campaign not paused"
            b.paused = False
            self._log(e.change_id, b.id, ChangeKind.RESUME, e.ts_ms, e.by, e.reason, "")
        elif isinstance(e, AmendmentProposed):
            assert e.amendment_id not in self.amendments
            self.amendments[e.amendment_id] = Amendment(
                e.amendment_id, b.id, e.kind, e.by, e.ts_ms, e.reason, e.delta_fen,
                e.days, e.last_date,
            )  # fmt: skip
            kind = ChangeKind.AMENDMENT_PROPOSED
            self._log(e.change_id, b.id, kind, e.ts_ms, e.by, e.reason, e.amendment_id)
        elif isinstance(e, AmendmentApplied):
            a = self._decide(e.amendment_id, AmendmentStatus.APPLIED, e.by, e.ts_ms, e.reason)
            a.split = list(e.split)
            if a.kind == AmendmentKind.BUDGET:
                apply_budget(b, e.split)
            elif a.kind == AmendmentKind.END:
                assert a.last_date is not None
                apply_end(b, a.last_date, e.split)
            else:  # a new campaign: its book was made from the proposal (LedgerState)
                assert a.kind == AmendmentKind.CAMPAIGN and not e.split
            kind = ChangeKind.AMENDMENT_APPLIED
            self._log(e.change_id, b.id, kind, e.ts_ms, e.by, e.reason, e.amendment_id)
        elif isinstance(e, BlockAdded):
            assert e.block_id not in self.blocks
            bl = Block(
                e.block_id, b.id, e.kind, e.person_id, e.platform, e.sku, e.by, e.ts_ms, e.reason
            )
            self.blocks[bl.id] = bl
            self._index(bl)
            self._log(e.change_id, b.id, ChangeKind.BLOCK_ADDED, e.ts_ms, e.by, e.reason, bl.id)
        else:
            assert isinstance(e, BlockLifted)
            bl = self.blocks[e.block_id]
            assert bl.active, "lift of a lifted block"
            bl.active, bl.lifted_by, bl.lifted_ms, bl.lift_reason = False, e.by, e.ts_ms, e.reason
            self._unindex(bl)
            kind = ChangeKind.BLOCK_LIFTED
            self._log(e.change_id, b.id, kind, e.ts_ms, e.by, e.reason, bl.id)

    def _decide(
        self, am_id: str, status: AmendmentStatus, by: str, at_ms: int, reason: str
    ) -> Amendment:
        a = self.amendments[am_id]
        assert a.status == AmendmentStatus.PROPOSED, "an amendment is decided once"
        # Four eyes (the audit's check on replay): nobody applies their own proposal.
        assert status != AmendmentStatus.APPLIED or by != a.proposed_by, "four eyes"
        a.status, a.decided_by, a.decided_ms, a.decision_reason = status, by, at_ms, reason
        return a

    def _log(
        self, cid: str, campaign_id: str, kind: ChangeKind, at_ms: int, by: str, reason: str,
        ref: str,
    ) -> None:  # fmt: skip
        assert cid == self.next_change_id(), "change ids are a gap-free sequence"
        self.log.append(Change(cid, campaign_id, kind, at_ms, by, reason, ref))


def free_fen(b: Book, day: str) -> int:
    """What an amendment may still take from ``day``'s tranche: nothing granted or held."""
    t = b.tranches[day]
    if t.state == OPEN:
        return t.available_fen
    if t.state == SCHEDULED:
        return t.base_fen + t.inflow_pending_fen
    return 0


def apply_budget(b: Book, split: list[tuple[str, int]]) -> None:
    for day, fen in split:
        t = b.tranches[day]
        assert b.serves(day), "amendment of a day the campaign no longer has"
        assert free_fen(b, day) + fen >= 0, "a cut below what was granted plus held"
        if t.state == SCHEDULED:
            t.base_fen += fen
            b.unreleased_fen += fen
        else:
            assert t.state == OPEN, "amendment of a closed tranche"
            t.available_fen += fen
            t.released_fen += fen
            if fen > 0:
                t.sold_out_at_ms = None
        b.budget_delta_fen += fen
    assert b.budget_fen >= 0


def apply_end(b: Book, last_date: str, withdrawn: list[tuple[str, int]]) -> None:
    assert b.serves(last_date)
    later = [d for d in b.order_days if d > last_date]
    assert [d for d, _ in withdrawn] == later
    for day, fen in withdrawn:
        t = b.tranches[day]
        assert t.state == SCHEDULED and fen == t.base_fen + t.inflow_pending_fen
        t.base_fen = t.inflow_pending_fen = 0
        b.unreleased_fen -= fen
        b.withdrawn_fen += fen
    b.last_day = last_date
    b.order_days = [d for d in b.order_days if d <= last_date]
    assert b.next_transition <= 2 * len(b.order_days)
