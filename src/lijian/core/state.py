"""The ledger's state and the one code that changes it: ``apply``.

:class:`LedgerState` holds every campaign's book, the redemptions and the indexes over
them (orders, idempotency keys, due expiries and quota restores). ``apply`` takes one
entry, a decision already taken, and moves its money; it checks nothing a decision has
not checked before (its asserts are the invariants, not rules). It runs live, right
after a decision emitted the entry, and on replay, so both build the same state.
The decisions themselves are in :mod:`lijian.core.ledger`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from sys import intern

from lijian.core.book import (
    CLOSED,
    HELD,
    OPEN,
    SCHEDULED,
    Book,
    Draw,
    PendingRestore,
    Person,
    Tranche,
    tranche_from_window,
)
from lijian.core.changes import Changes
from lijian.core.detectors import RiskIndex
from lijian.core.draw import commitment, is_seed
from lijian.core.entries import (
    CHANGE_ENTRIES,
    VOUCHER_ENTRIES,
    AmendmentApplied,
    AnyEntry,
    ClockMoved,
    DrawCommitted,
    DrawRevealed,
    DrawSeeded,
    FlagReviewed,
    GroupFull,
    HoldCaptured,
    HoldPlaced,
    HoldReleased,
    IdentifiersSeen,
    ItemsSubsidised,
    LedgerKeyed,
    LotteryDrawn,
    QuotaRestored,
    RefundRecorded,
    RiskFlagged,
    RiskNoted,
    SoldOut,
    TrancheClosed,
    TrancheOpened,
    VoucherClaimed,
    VoucherRegistered,
    VoucherRestored,
    WindowDecided,
)
from lijian.core.errors import CampaignNotFound, InvalidRequest, RedemptionNotFound
from lijian.core.fingerprint import packed
from lijian.core.item_ledger import ItemLedger
from lijian.core.pair_index import KeyIndex, PairIndex
from lijian.core.redemption import Redemption, Refund
from lijian.core.risk import RiskFlags
from lijian.core.schedule import Schedule
from lijian.core.settings import Settings
from lijian.core.settings_text import CampaignSettingsDiffer, settings_from_toml
from lijian.core.status import (
    REFUNDABLE,
    AmendmentKind,
    KeyUse,
    RedemptionStatus,
    ReleaseReason,
)
from lijian.core.vouchers import Vouchers
from lijian.core.window import check_window


class LedgerState:
    """All campaigns of one engine, the cross-campaign order index and idempotency."""

    def __init__(self, settings: Iterable[Settings]) -> None:
        self.books: dict[str, Book] = {}
        for s in settings:
            if s.campaign.id in self.books:
                raise InvalidRequest(f"campaign {s.campaign.id!r} loaded twice")
            self.add_book(s)
        self.redemptions: dict[str, Redemption] = {}
        # (platform, order_id) -> redemption id of the held or captured redemption (R15).
        self.active_orders: PairIndex[str] = PairIndex()
        # (client_id, key) -> (what it was used for, redemption id, refund id or "")
        self.idempotency = KeyIndex()
        self.changes = Changes()  # operators' pauses, amendments and blocks
        self.risk = RiskFlags()  # patterns of fraud seen, for review (core/risk.py)
        self.vouchers = Vouchers()  # claimed vouchers ([claims]; core/vouchers.py)
        self.items = ItemLedger()  # trade-in units per category and serials (core/item_ledger.py)
        self.detectors = RiskIndex()  # what the detectors over the ledger keep (detectors.py)
        self.now_ms = 0
        # The manual clock's last move (a ClockMoved entry); None: never moved.
        self.manual_clock_ms: int | None = None
        self.entries_applied = 0
        # The id of the key this ledger's identifiers are keyed with (LedgerKeyed): None
        # for a ledger that has not started with a key yet.
        self.key_id: str | None = None
        self._expiries: list[tuple[int, str]] = []
        self._restores: list[tuple[PendingRestore, str, str]] = []  # (restore, campaign, person)
        # Earliest moment a timed event may be due: lets ``advance`` return at once on the
        # hot path. Lowered by every apply that schedules something earlier; 0 = recompute.
        self._next_due_ms = 0

    def add_book(self, s: Settings) -> Book:
        """A campaign's book, before anything happened in it."""
        sched = Schedule(s)
        tranches = {w.date.isoformat(): tranche_from_window(w) for w in sched.windows}
        b = self.books[s.campaign.id] = Book(s, sched, tranches, list(tranches))
        return b

    def open_campaign(self, am_id: str) -> None:
        """The book of a new campaign whose proposal (``am_id``) is being applied, made
        from the settings text its proposal carried. A ``--campaign`` file of the same id
        given at start-up already made it: accepted if its settings are the same (no
        entry names the campaign before this one, so that book is untouched), refused
        otherwise (the ledger's settings are what money is granted under)."""
        a = self.changes.amendments[am_id]
        assert a.kind == AmendmentKind.CAMPAIGN and a.settings_toml is not None
        s = settings_from_toml(a.settings_toml)
        assert s.campaign.id == a.campaign_id
        old = self.books.get(a.campaign_id)
        if old is None:
            self.add_book(s)
        elif old.settings.raw != s.raw:
            raise CampaignSettingsDiffer(
                f"campaign {a.campaign_id!r} was created over the API ({am_id}) with other "
                "settings than the --campaign file gives; leave that file out (the ledger "
                "serves the campaign) or give the campaign another id"
            )

    # ------------------------------------------------------------------ queries
    def book(self, campaign_id: str) -> Book:
        b = self.books.get(campaign_id)
        if b is None:
            raise CampaignNotFound(f"unknown campaign {campaign_id!r}")
        return b

    def redemption(self, redemption_id: str) -> Redemption:
        r = self.redemptions.get(redemption_id)
        if r is None:
            raise RedemptionNotFound(f"unknown redemption {redemption_id!r}")
        return r

    def person(self, campaign_id: str, person_id: str) -> Person:
        return self.book(campaign_id).persons.get(person_id) or Person(person_id)

    # -------------------------------------------------------------------- apply
    def apply(self, e: AnyEntry) -> None:
        """The only code that changes state; run live and on replay."""
        self.entries_applied += 1
        self.now_ms = max(self.now_ms, e.ts_ms)
        if isinstance(e, HoldPlaced):
            self._apply_hold(e)
            self.detectors.apply(self.books[e.campaign_id], e)
        elif isinstance(e, HoldCaptured):
            self._apply_capture(e)
        elif isinstance(e, HoldReleased):
            self._apply_release(e)
        elif isinstance(e, RefundRecorded):
            self._apply_refund(e)
            r = self.redemptions[e.redemption_id]
            skus = [sku for sku, _ in e.returned_lines] or [sku for sku, _, _ in r.lines]
            self.detectors.apply_refund(self.books[r.campaign_id], e, r.person_id, skus)
        elif isinstance(e, QuotaRestored):
            self._apply_restore(e)
        elif isinstance(e, TrancheOpened):
            self._apply_open(e)
        elif isinstance(e, TrancheClosed):
            self._apply_close(e)
        elif isinstance(e, SoldOut):
            self._apply_soldout(e)
        elif isinstance(e, VOUCHER_ENTRIES):
            if isinstance(e, (VoucherClaimed, VoucherRestored, VoucherRegistered, LotteryDrawn)):
                cid = e.campaign_id
            else:
                cid = self.vouchers.by_id[e.voucher_id].campaign_id
            self.vouchers.apply(self.books[cid], e, self._send)
            if isinstance(e, (VoucherClaimed, VoucherRegistered)):  # a key, as a hold's
                self.idempotency[(e.client_id, e.idempotency_key)] = (
                    KeyUse.CLAIM,
                    e.voucher_id,
                    "",
                )
            self._next_due_ms = 0  # a new valid_until, or one that no longer counts
        elif isinstance(e, IdentifiersSeen):
            b = self.books[e.campaign_id]
            b.identity.record(e.person_id, e.identifiers, b.figures_of)
        elif isinstance(e, CHANGE_ENTRIES):
            # An operator's change (lijian.core.changes). An applied amendment may end the
            # campaign early (fewer transitions) or start a new one (its own releases):
            # recompute when the next event is due.
            if isinstance(e, AmendmentApplied):
                a = self.changes.amendments[e.amendment_id]
                if a.kind == AmendmentKind.CAMPAIGN:
                    self.open_campaign(e.amendment_id)
                self._next_due_ms = 0
            changed = self.books.get(e.campaign_id)
            self.changes.apply(changed, e)
            if isinstance(e, AmendmentApplied) and changed is not None:
                for day, _ in e.split:  # a budget's share of an open day moves it at once
                    t = changed.tranches.get(day)
                    if t is not None and t.state == OPEN:
                        changed.daybook.burn_point(day, t.opens_at_ms, e.ts_ms, t.available_fen)
        elif isinstance(e, ClockMoved):
            assert self.manual_clock_ms is None or e.ts_ms >= self.manual_clock_ms
            self.manual_clock_ms = e.ts_ms
        elif isinstance(e, WindowDecided):
            # Recomputes the draw from the stored seed and arrivals, live and on replay.
            b = self.books[e.campaign_id]
            b.windows[e.day] = check_window(b, self.idempotency, self.redemptions, e)
        elif isinstance(e, GroupFull):
            self.books[e.campaign_id].identity.full.setdefault(e.group_key, (e.ts_ms, e.size))
        elif isinstance(e, (DrawSeeded, DrawCommitted, DrawRevealed)):
            self._apply_draw(e)
        elif isinstance(e, RiskFlagged):
            assert e.campaign_id in self.books and all(
                self.redemptions[r].campaign_id == e.campaign_id for r in e.redemption_ids
            ), "a flag names its campaign's redemptions"
            self.risk.apply(e)
            self.detectors.apply(self.books[e.campaign_id], e)
        elif isinstance(e, ItemsSubsidised):
            self.items.apply(e, self.redemptions[e.redemption_id])
        elif isinstance(e, RiskNoted):
            self.detectors.apply(self.books[e.campaign_id], e)
        elif isinstance(e, FlagReviewed):
            self.risk.review(e)
        else:
            assert isinstance(e, LedgerKeyed)
            assert self.key_id in (None, e.key_id), "a ledger is keyed with one key"
            self.key_id = e.key_id

    def _apply_draw(self, e: DrawSeeded | DrawCommitted | DrawRevealed) -> None:
        b = self.books[e.campaign_id]
        if isinstance(e, DrawRevealed):
            d = b.draws[e.day]
            assert d.seed is None, "a seed is revealed once"
            d.seed, d.revealed_ms = e.seed, e.ts_ms
            if not is_seed(e.seed) or commitment(e.seed) != d.commitment:
                d.problem = f"the seed revealed for {e.day} does not match its commitment"
            b.unrevealed.remove(e.day)
            return
        assert e.day in b.tranches and e.day not in b.draws
        if isinstance(e, DrawSeeded):  # a ledger from before commitments: public at once
            assert is_seed(e.seed)
            b.draws[e.day] = Draw(e.day, commitment(e.seed), e.ts_ms, e.seed, e.ts_ms)
            return
        b.draws[e.day] = Draw(e.day, e.commitment, e.ts_ms)
        b.unrevealed.append(e.day)
        b.unrevealed.sort()
        self._next_due_ms = 0  # its reveal is a timed event

    def _apply_hold(self, e: HoldPlaced) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == OPEN, "hold from a tranche that is not open"
        assert 0 < e.discount_fen <= t.available_fen, "R1/R4: hold exceeds the tranche"
        assert e.redemption_id not in self.redemptions
        p = b.persons.get(e.person_id)
        if p is None:
            p = b.persons[e.person_id] = Person(e.person_id)
        day = intern(e.day)  # one copy of a day (Redemption), and the person's id: shared
        cap = b.settings.limits.person_savings_cap_fen
        # R7 per linked group ([identity]): the audit's cap check is this assert on replay.
        # The group's running totals: O(1) whatever its size.
        link = bool(b.settings.identity.link_by)
        g = b.group_figures([b.identity.find(e.person_id)], e.day) if link else p
        assert g.used_fen + g.held_fen + e.discount_fen <= cap, "R7: hold exceeds the cap"
        t.available_fen -= e.discount_fen
        t.held_fen += e.discount_fen
        b.daybook.held(e.day, e.ts_ms, e.discount_fen)
        b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        p.held_fen += e.discount_fen
        p.add_count(day, 1)
        b.identity.adjust(e.person_id, 0, e.discount_fen, 1, day)
        r = Redemption.new(
            e.redemption_id,
            e.campaign_id,
            day,
            p.person_id,
            e.platform,
            e.order_id,
            e.payable_fen,
            e.discount_fen,
            e.capped,
            e.ts_ms,
            e.expires_at_ms,
            tuple(e.lines),
            packed(e.fingerprint),
            e.client_id,
            e.idempotency_key,
        )
        self.redemptions[r.id] = r
        self.active_orders[(e.platform, e.order_id)] = r.id
        self.idempotency[(e.client_id, e.idempotency_key)] = (KeyUse.HOLD, r.id, "")
        heapq.heappush(self._expiries, (e.expires_at_ms, r.id))
        self._next_due_ms = min(self._next_due_ms, e.expires_at_ms)

    def _apply_capture(self, e: HoldCaptured) -> None:
        r = self.redemptions[e.redemption_id]
        assert r.status == HELD, "a hold ends at most once"
        where, (payable_fen, discount_fen) = r.where, r.fen  # (packed: core/redemption.py)
        b = self.books[where.campaign_id]
        t, p = b.tranches[where.day], b.persons[r.person_id]
        t.held_fen -= discount_fen
        t.captured_fen += discount_fen
        b.daybook.captured(e.ts_ms, where.platform, payable_fen, discount_fen)
        p.held_fen -= discount_fen
        p.used_fen += discount_fen
        b.identity.adjust(r.person_id, discount_fen, -discount_fen, 0, where.day)
        r.status, r.captured_ms = RedemptionStatus.CAPTURED, e.ts_ms

    def _apply_release(self, e: HoldReleased) -> None:
        r = self.redemptions[e.redemption_id]
        assert r.status == HELD, "a hold ends at most once"
        b = self.books[r.campaign_id]
        t, p = b.tranches[r.day], b.persons[r.person_id]
        t.held_fen -= r.discount_fen
        p.held_fen -= r.discount_fen
        p.add_count(r.day, -1)
        b.identity.adjust(r.person_id, 0, -r.discount_fen, -1, r.day)
        if self.vouchers.unhold(b, r, t):  # paid with a voucher: back into the voucher
            self._next_due_ms = 0
        elif t.state == OPEN:
            # The money never left this tranche's release: it is simply free again.
            t.available_fen += r.discount_fen
            if r.discount_fen:
                t.sold_out_at_ms = None
            b.daybook.burn_point(r.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        else:
            t.late_returns_out_fen += r.discount_fen
            self._send(b, e.to_day, r.discount_fen, e.ts_ms)
        expired = e.why == ReleaseReason.EXPIRE
        r.status = RedemptionStatus.EXPIRED if expired else RedemptionStatus.VOIDED
        r.ended_ms = e.ts_ms
        del self.active_orders[(r.platform, r.order_id)]
        self.items.ended(r)

    def _apply_refund(self, e: RefundRecorded) -> None:
        r = self.redemptions[e.redemption_id]
        assert r.status in REFUNDABLE, "refund of a non-captured order"
        b = self.books[r.campaign_id]
        self.note_refund(r, e)
        self.items.ended(r)  # a full refund frees its items' units and serials
        t = b.tranches[r.day]
        t.clawed_back_fen += e.clawback_fen
        b.daybook.clawed_back(e.ts_ms, r.platform, e.clawback_fen)
        if e.clawback_to_same:
            self._credit(t, e.clawback_fen)
            b.daybook.burn_point(r.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        else:
            self._send(b, e.clawback_to_day, e.clawback_fen, e.ts_ms)
        if e.quota_restore_fen:
            assert e.quota_restore_at_ms is not None
            self.add_restore(
                r,
                PendingRestore(e.quota_restore_at_ms, r.id, e.refund_id, e.quota_restore_fen),
            )

    def note_refund(self, r: Redemption, e: RefundRecorded) -> None:
        """The redemption's side of a refund: its figures, history and idempotency key.
        (Called by ``apply`` for every RefundRecorded.)"""
        assert r.returned_payable_fen + e.returned_payable_fen <= r.payable_fen
        r.returned_payable_fen += e.returned_payable_fen
        r.card_refunded_fen += e.card_refund_fen
        r.clawed_back_fen += e.clawback_fen
        assert r.card_refunded_fen <= r.pay_fen and r.clawed_back_fen <= r.discount_fen
        if e.returned_lines:
            returned = r.returned_qty if r.returned_qty is not None else {}
            for sku, qty in e.returned_lines:
                returned[sku] = returned.get(sku, 0) + qty
            r.returned_qty = returned
        full = r.returned_payable_fen == r.payable_fen
        if full:
            assert r.card_refunded_fen == r.pay_fen and r.clawed_back_fen == r.discount_fen
        r.status = RedemptionStatus.REFUNDED if full else RedemptionStatus.PARTIALLY_REFUNDED
        self.idempotency[(e.client_id, e.idempotency_key)] = (KeyUse.REFUND, r.id, e.refund_id)
        after = (
            r.status,
            r.returned_payable_fen,
            r.card_refunded_fen,
            r.clawed_back_fen,
            len(r.refunds) + 1,
        )
        refund = Refund(
            e.refund_id,
            e.ts_ms,
            e.kind,
            e.returned_payable_fen,
            e.card_refund_fen,
            e.clawback_fen,
            e.quota_restore_fen,
            e.quota_restore_at_ms,
            packed(e.fingerprint),
            e.client_id,
            e.idempotency_key,
            after,
        )
        r.refunds = (*r.refunds, refund)  # a few at most (MAX_REFUNDS_PER_REDEMPTION)

    def add_restore(self, r: Redemption, pr: PendingRestore) -> None:
        """A quota restore becomes due at ``pr.at_ms`` (a timed event of ``advance``)."""
        p = self.books[r.campaign_id].persons.setdefault(r.person_id, Person(r.person_id))
        if p.restores is None:
            p.restores = []
        p.restores.append(pr)
        heapq.heappush(self._restores, (pr, r.campaign_id, r.person_id))
        self._next_due_ms = min(self._next_due_ms, pr.at_ms)

    def _apply_restore(self, e: QuotaRestored) -> None:
        r = self.redemptions[e.redemption_id]
        b = self.books[r.campaign_id]
        p = b.persons[r.person_id]
        assert p.restores is not None, "a restore is applied after its refund"
        pr = next(x for x in p.restores if x.refund_id == e.refund_id and not x.done)
        assert pr.amount_fen == e.amount_fen
        assert p.used_fen >= e.amount_fen, "restore exceeds what the person used"
        p.used_fen -= e.amount_fen
        b.identity.adjust(r.person_id, -e.amount_fen, 0, 0, r.day)
        pr.done = True
        p.restores.remove(pr)
        if not p.restores:
            p.restores = None

    def _apply_open(self, e: TrancheOpened) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == SCHEDULED and b.order_days[b.next_transition // 2] == e.day
        assert e.amount_fen == t.base_fen + t.inflow_pending_fen
        t.state = OPEN
        t.released_fen = t.available_fen = e.amount_fen
        t.inflow_pending_fen = 0
        b.unreleased_fen -= e.amount_fen
        b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        b.next_transition += 1
        self._next_due_ms = 0

    def _apply_close(self, e: TrancheClosed) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == OPEN and e.leftover_fen == t.available_fen
        b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)  # ends at the leftover
        t.state = CLOSED
        t.available_fen = 0
        t.rolled_out_fen += e.leftover_fen
        self._send(b, e.to_day, e.leftover_fen, e.ts_ms)
        b.next_transition += 1
        self._next_due_ms = 0

    def _apply_soldout(self, e: SoldOut) -> None:
        b = self.books[e.campaign_id]
        b.tranches[e.day].sold_out_at_ms = e.ts_ms
        b.daybook.sold_out(e.day, e.ts_ms)

    def _credit(self, t: Tranche, amount_fen: int) -> None:
        """New money into an open tranche (inflow, clawback): released again, grantable."""
        t.available_fen += amount_fen
        t.released_fen += amount_fen
        if amount_fen:
            t.sold_out_at_ms = None

    def _send(self, b: Book, day: str | None, amount_fen: int, ts_ms: int) -> None:
        if not amount_fen:
            return
        if day is None:
            b.lost_fen += amount_fen
            return
        t = b.tranches[day]
        if t.state == SCHEDULED:
            t.inflow_pending_fen += amount_fen
            b.unreleased_fen += amount_fen
        elif t.state == OPEN:
            self._credit(t, amount_fen)
            b.daybook.burn_point(day, t.opens_at_ms, ts_ms, t.available_fen)
        else:  # a closed target would strand the money: decisions never choose one
            raise AssertionError(f"money sent to closed tranche {day}")
