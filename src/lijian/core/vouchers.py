"""Claimed vouchers: their records, and the apply of their entries.

A voucher ([claims] mode = "claim") is claimed from the day's tranche: its value moves
from the tranche's ``available_fen`` to its ``voucher_fen`` and counts against the
person's savings cap as held money (``Person.held_fen``). Paying with it moves the
discount from the voucher into the hold (``VoucherHeld`` then ``HoldPlaced``); a capture
ends it (``VoucherUsed``: the rest goes back); a void or a hold's expiry gives the
discount back to the voucher (``unhold``, called by the apply of ``HoldReleased``); at
``valid_until`` an unused voucher's value goes back (``VoucherExpired``). Every fen stays
in exactly one place: the tranche's flows count ``voucher_fen`` (lijian.core.invariants).

The decisions are in :mod:`lijian.core.claims`; this module only applies entries, live
and on replay, through ``Vouchers.apply`` (called by ``LedgerState.apply``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import msgspec

from lijian.core.book import OPEN, Book, Person, Tranche
from lijian.core.draw import draw_order
from lijian.core.entries import (
    LotteryDrawn,
    VoucherClaimed,
    VoucherEntry,
    VoucherExpired,
    VoucherHeld,
    VoucherRegistered,
    VoucherRestored,
    VoucherUsed,
)
from lijian.core.redemption import Redemption
from lijian.core.status import VoucherStatus

CLAIMED, HELD_V = VoucherStatus.CLAIMED, VoucherStatus.HELD

# Sends money to a tranche by day (None: lost): LedgerState._send.
Send = Callable[[Book, str | None, int, int], None]


class Voucher(msgspec.Struct, array_like=True):
    id: str
    campaign_id: str
    person_id: str
    value_fen: int
    category: str | None
    claimed_ms: int
    valid_until_ms: int
    tranche_day: str  # the tranche it was claimed from (or restored into)
    money_day: str  # the tranche its value sits in now (a hold moves it to the hold's)
    client_id: str
    idempotency_key: str
    fingerprint: str
    status: VoucherStatus = CLAIMED
    redemption_id: str | None = None  # the order paying (held) or that paid (used) with it
    discount_fen: int = 0  # that order's discount, taken from the voucher
    ended_ms: int | None = None  # used, expired
    restored_from: str | None = None  # the voucher whose use a full refund gave back
    returned_fen: int = 0  # its value that went back (capture: the rest; expiry: all)
    registered: bool = False  # a lottery's registration (won: claimed; else lost)


class Vouchers:
    """Every voucher of the ledger, and the indexes the decisions read."""

    def __init__(self) -> None:
        self.by_id: dict[str, Voucher] = {}
        self.by_person: dict[tuple[str, str], list[str]] = {}  # (campaign, person) → ids
        self.by_redemption: dict[str, str] = {}  # redemption id → voucher id
        self.claimed_by_day: dict[tuple[str, str], int] = {}  # (campaign, day) → claims
        # (valid_until, id) of claimed vouchers; stale tops (held, used) are skipped.
        self.expiries: list[tuple[int, str]] = []
        # (campaign, day) → the day's lottery registrations not drawn yet, in arrival order
        self.registrations: dict[tuple[str, str], list[str]] = {}
        # What applying a LotteryDrawn found: winners the draw does not give (the audit's)
        self.problems: list[str] = []
        # (campaign, day) → (registrations, winners) of a lottery drawn (the public feed's)
        self.drawn: dict[tuple[str, str], tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def of_person(self, campaign_id: str, person_id: str) -> list[Voucher]:
        return [self.by_id[v] for v in self.by_person.get((campaign_id, person_id), ())]

    def claims_counted(self, campaign_id: str, person_id: str, day: str) -> tuple[int, int]:
        """(claims in all, claims on ``day``) of a person: restored vouchers not counted."""
        total = today = 0
        for v in self.of_person(campaign_id, person_id):
            if v.restored_from is None and v.status != VoucherStatus.LOST:
                total += 1
                today += v.tranche_day == day
        return total, today

    def claimed_in_category(self, campaign_id: str, person_id: str, day: str, cat: str) -> bool:
        return any(
            v.tranche_day == day and v.category == cat and v.restored_from is None
            for v in self.of_person(campaign_id, person_id)
        )

    def next_due(self) -> tuple[int, str] | None:
        """The earliest claimed voucher's (valid_until, id)."""
        h = self.expiries
        while h and self.by_id[h[0][1]].status != CLAIMED:
            heapq.heappop(h)
        return h[0] if h else None

    # ------------------------------------------------------------------ apply
    def apply(self, b: Book, e: VoucherEntry, send: Send) -> None:
        if isinstance(e, VoucherClaimed):
            self._claimed(b, e)
        elif isinstance(e, VoucherHeld):
            self._held(b, e)
        elif isinstance(e, VoucherUsed):
            v = self.by_id[e.voucher_id]
            assert v.status == HELD_V and e.returned_fen == v.value_fen - v.discount_fen
            self._give_back(b, v, e.returned_fen, e.to_day, e.to_same, e.ts_ms, send)
            v.status, v.ended_ms = VoucherStatus.USED, e.ts_ms
            b.daybook.voucher_used(e.ts_ms)
        elif isinstance(e, VoucherRegistered):
            v = Voucher(e.voucher_id, e.campaign_id, e.person_id, e.value_fen, e.category,
                        e.ts_ms, e.draw_at_ms, e.day, e.day, e.client_id, e.idempotency_key,
                        e.fingerprint, VoucherStatus.REGISTERED, registered=True)  # fmt: skip
            assert v.id not in self.by_id, "a voucher id is given once"
            self.by_id[v.id] = v
            self.by_person.setdefault((v.campaign_id, v.person_id), []).append(v.id)
            self.registrations.setdefault((v.campaign_id, v.tranche_day), []).append(v.id)
            b.persons.setdefault(v.person_id, Person(v.person_id))  # its row is stored
        elif isinstance(e, LotteryDrawn):
            self._drawn(b, e)
        elif isinstance(e, VoucherExpired):
            v = self.by_id[e.voucher_id]
            assert v.status == CLAIMED and e.ts_ms >= v.valid_until_ms, "expiry of a usable voucher"
            self._give_back(b, v, v.value_fen, e.to_day, e.to_same, e.ts_ms, send)
            v.status, v.ended_ms = VoucherStatus.EXPIRED, e.ts_ms
            b.daybook.voucher_expired(e.ts_ms, v.value_fen)
        else:
            self._restored(b, e)

    def _add(self, b: Book, v: Voucher) -> None:
        assert v.id not in self.by_id, "a voucher id is given once"
        t = b.tranches[v.money_day]
        p = b.persons.get(v.person_id)
        if p is None:
            p = b.persons[v.person_id] = Person(v.person_id)
        t.voucher_fen += v.value_fen
        _on_person(b, p, v.value_fen, v.money_day)
        self.by_id[v.id] = v
        self.by_person.setdefault((v.campaign_id, v.person_id), []).append(v.id)
        heapq.heappush(self.expiries, (v.valid_until_ms, v.id))

    def _claimed(self, b: Book, e: VoucherClaimed) -> None:
        t = b.tranches[e.day]
        assert t.state == OPEN, "a claim from a tranche that is not open"
        assert 0 < e.value_fen <= t.available_fen, "a claim exceeds the tranche"
        t.available_fen -= e.value_fen
        t.vouchers_claimed += 1
        b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        v = Voucher(e.voucher_id, e.campaign_id, e.person_id, e.value_fen, e.category, e.ts_ms,
                    e.valid_until_ms, e.day, e.day, e.client_id, e.idempotency_key,
                    e.fingerprint)  # fmt: skip
        self._add(b, v)
        key = (e.campaign_id, e.day)
        self.claimed_by_day[key] = self.claimed_by_day.get(key, 0) + 1
        b.daybook.vouchers_claimed(e.day, 1)

    def _drawn(self, b: Book, e: LotteryDrawn) -> None:
        """The winners take their value from the tranche (as a claim), the rest are lost.
        The winners are recomputed from the revealed seed: a difference is a problem."""
        regs = self.registrations.pop((e.campaign_id, e.day), [])
        self.drawn[(e.campaign_id, e.day)] = (len(regs), len(e.winners))
        d = b.draws.get(e.day)
        seed = d.seed if d is not None else None
        want = lottery_winners(b, self, regs, seed) if seed is not None else None
        if want != e.winners:
            self.problems.append(f"{b.id} lottery {e.day}: winners are not the draw's")
        won = set(e.winners)
        t = b.tranches[e.day]
        for vid in e.winners:  # in the draw's order
            v = self.by_id[vid]
            assert v.status == VoucherStatus.REGISTERED and vid in regs
            assert t.state == OPEN and v.value_fen <= t.available_fen, "a win beyond the tranche"
            t.available_fen -= v.value_fen
            t.vouchers_claimed += 1
            v.status, v.claimed_ms, v.valid_until_ms = CLAIMED, e.ts_ms, e.valid_until_ms
            t.voucher_fen += v.value_fen
            _on_person(b, b.persons[v.person_id], v.value_fen, e.day)
            heapq.heappush(self.expiries, (v.valid_until_ms, v.id))
        b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        b.daybook.vouchers_claimed(e.day, len(e.winners))
        for vid in regs:
            if vid not in won:
                v = self.by_id[vid]
                v.status, v.ended_ms = VoucherStatus.LOST, e.ts_ms

    def _restored(self, b: Book, e: VoucherRestored) -> None:
        old = self.by_id[e.from_voucher_id]
        t = b.tranches[e.day]
        # The refund's clawback was credited to this tranche right before: it is the
        # new voucher's value, taken back from the tranche's available money.
        assert 0 < e.value_fen <= t.available_fen, "a restore without its clawback"
        t.available_fen -= e.value_fen
        if t.state == OPEN:  # the burn-down ends at the available money
            b.daybook.burn_point(e.day, t.opens_at_ms, e.ts_ms, t.available_fen)
        v = Voucher(e.voucher_id, old.campaign_id, old.person_id, e.value_fen, old.category,
                    e.ts_ms, e.valid_until_ms, e.day, e.day, old.client_id,
                    old.idempotency_key, old.fingerprint, restored_from=old.id)  # fmt: skip
        self._add(b, v)

    def _held(self, b: Book, e: VoucherHeld) -> None:
        v = self.by_id[e.voucher_id]
        assert v.status == CLAIMED and 0 < e.discount_fen <= v.value_fen
        to = b.tranches[e.day]
        assert to.state == OPEN, "a voucher's hold in a tranche that is not open"
        if v.money_day != e.day:  # a voucher of an earlier day: its value moves along
            frm = b.tranches[v.money_day]
            frm.voucher_fen -= v.value_fen
            frm.late_returns_out_fen += v.value_fen
            to.released_fen += v.value_fen
            to.voucher_fen += v.value_fen
            v.money_day = e.day
        to.voucher_fen -= e.discount_fen
        to.available_fen += e.discount_fen  # taken at once by the HoldPlaced that follows
        _on_person(b, b.persons[v.person_id], -e.discount_fen, e.day)  # the hold adds it back
        v.status, v.redemption_id, v.discount_fen = HELD_V, e.redemption_id, e.discount_fen
        self.by_redemption[e.redemption_id] = v.id

    def unhold(self, b: Book, r: Redemption, t: Tranche) -> bool:
        """A voucher's hold ended without capture (void, expiry): its discount goes back
        into the voucher, which can be used again (or expires at its valid_until). False
        for a hold without a voucher. Called by the apply of ``HoldReleased``."""
        vid = self.by_redemption.get(r.id)
        if vid is None:
            return False
        v = self.by_id[vid]
        assert v.status == HELD_V and v.money_day == r.day
        t.voucher_fen += r.discount_fen
        _on_person(b, b.persons[r.person_id], r.discount_fen, r.day)
        v.status, v.redemption_id, v.discount_fen = CLAIMED, None, 0
        del self.by_redemption[r.id]
        heapq.heappush(self.expiries, (v.valid_until_ms, v.id))
        return True

    def _give_back(
        self, b: Book, v: Voucher, amount: int, to_day: str | None, same: bool, ts: int, send: Send
    ) -> None:
        t = b.tranches[v.money_day]
        t.voucher_fen -= amount
        _on_person(b, b.persons[v.person_id], -amount, v.money_day)
        v.returned_fen += amount
        if same:
            assert t.state == OPEN, "money back to a tranche that is not open"
            t.available_fen += amount  # never left this tranche's release: free again
            if amount:
                t.sold_out_at_ms = None
            b.daybook.burn_point(t.day, t.opens_at_ms, ts, t.available_fen)
        else:
            t.late_returns_out_fen += amount
            send(b, to_day, amount, ts)

    # ---------------------------------------------------------------- snapshot
    def restore(self, records: list[Voucher]) -> None:
        """The records of a snapshot (in the order they were made): the indexes again."""
        for v in records:
            self.by_id[v.id] = v
            self.by_person.setdefault((v.campaign_id, v.person_id), []).append(v.id)
            if v.status == HELD_V or (v.status == VoucherStatus.USED and v.redemption_id):
                assert v.redemption_id is not None
                self.by_redemption[v.redemption_id] = v.id
            if v.status == CLAIMED:
                self.expiries.append((v.valid_until_ms, v.id))
            if v.restored_from is None and v.status != VoucherStatus.LOST:
                key = (v.campaign_id, v.tranche_day)
                self.claimed_by_day[key] = self.claimed_by_day.get(key, 0) + 1
            if v.status == VoucherStatus.REGISTERED:
                self.registrations.setdefault((v.campaign_id, v.tranche_day), []).append(v.id)
            elif v.registered:  # drawn: a winner unless lost
                regs, won = self.drawn.get((v.campaign_id, v.tranche_day), (0, 0))
                won += v.status != VoucherStatus.LOST
                self.drawn[(v.campaign_id, v.tranche_day)] = (regs + 1, won)
        heapq.heapify(self.expiries)


def lottery_winners(b: Book, vs: Vouchers, regs: list[str], seed: str) -> list[str]:
    """The registrations that win, in the draw's order (lijian.core.draw: rounds per
    person, HMAC order under the day's seed): each takes its value from the open
    tranche while it holds one whole voucher; a person whose savings cap has no room
    for it is skipped. Pure: the decision and the apply (the audit) both call it."""
    if not regs:
        return []
    vouchers = [vs.by_id[vid] for vid in regs]
    day = vouchers[0].tranche_day
    keys = [b.identity.find(v.person_id) for v in vouchers]
    t = b.tranches[day]
    left = t.available_fen if t.state == OPEN else 0
    cap = b.settings.limits.person_savings_cap_fen
    more: dict[str, int] = {}  # what this draw already gave each person key
    out: list[str] = []
    for i in draw_order(seed, b.id, day, keys):
        v = vouchers[i]
        if left < v.value_fen:
            break
        g = b.group_figures([keys[i]], day)
        if g.used_fen + g.held_fen + more.get(keys[i], 0) + v.value_fen > cap:
            continue
        more[keys[i]] = more.get(keys[i], 0) + v.value_fen
        left -= v.value_fen
        out.append(v.id)
    return out


def whole_vouchers(b: Book, fen: int) -> int:
    """How many whole vouchers ``fen`` holds (today's vouchers left: the status, the
    public feed, the vouchers.threshold event)."""
    return fen // b.settings.claims.voucher_value_fen


def _on_person(b: Book, p: Person, held_fen: int, day: str) -> None:
    """A voucher's value counts against the savings cap as held money (and its group's)."""
    p.held_fen += held_fen
    b.identity.adjust(p.person_id, 0, held_fen, 0, day)
