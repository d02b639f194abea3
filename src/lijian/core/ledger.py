"""The ledger state machine: tranches, holds, captures, voids, expiries, refunds, restores.

Model
-----
Every change is an immutable entry (:mod:`lijian.core.entries`). A *decision* method
(``hold``, ``capture``, ``void``, ``refund``, ``advance``) checks the rules against the
current state and emits entries; ``apply`` is the only code that changes state, and it is
also what replay runs. So the state after a restart is, by construction, the state that
was acknowledged.

Money of one campaign lives in exactly one of these places at any moment, and their sum
is always the budget (checked by :func:`check_invariants`):

- ``unreleased``: base amounts and inflows of tranches not opened yet,
- ``available``: free to grant in an open tranche,
- ``held``: reserved by holds (R16) not yet captured, voided or expired,
- ``granted``: captured discounts net of clawbacks,
- ``lost``: expired leftovers (``leftover = "expire"``) and forfeited clawbacks.

Time only moves forward (``now_ms`` below the last seen time is treated as the last seen
time). Timed events (open, close, hold expiry, quota restore) are applied by ``advance``
in time order before any command, so a capture that arrives after its hold's expiry sees
an expired hold, whatever the batch it is in.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import msgspec

from lijian.core.entries import (
    AnyEntry,
    HoldCaptured,
    HoldPlaced,
    HoldReleased,
    QuotaRestored,
    RefundRecorded,
    SoldOut,
    TrancheClosed,
    TrancheOpened,
)
from lijian.core.errors import (
    CampaignNotFound,
    Conflict,
    IdempotencyKeyReused,
    InvalidRequest,
    RedemptionNotFound,
    RefundExceedsOrder,
)
from lijian.core.order import Order, RefundRequest
from lijian.core.rules import (
    Evaluation,
    Reason,
    reason,
    refund_split_fen,
    returned_value_fen,
)
from lijian.core.schedule import Schedule, TrancheWindow
from lijian.core.settings import Settings
from lijian.core.status import (
    HOLD_ENDED,
    REFUNDABLE,
    KeyUse,
    RedemptionStatus,
    RefundKind,
    ReleaseReason,
    TrancheState,
)

# Limits (TIGER_STYLE): bound every loop that time can make long.
MAX_TIMED_EVENTS_PER_ADVANCE = 10_000_000
MAX_REFUNDS_PER_REDEMPTION = 100

SCHEDULED, OPEN, CLOSED = TrancheState.SCHEDULED, TrancheState.OPEN, TrancheState.CLOSED
HELD, CAPTURED = RedemptionStatus.HELD, RedemptionStatus.CAPTURED


class Tranche(msgspec.Struct, array_like=True):
    day: str
    base_fen: int
    opens_at_ms: int
    closes_at_ms: int
    state: TrancheState = SCHEDULED
    inflow_pending_fen: int = 0  # money sent here before it opened (rollover, returns)
    released_fen: int = 0  # base + every inflow, once open
    available_fen: int = 0
    held_fen: int = 0
    captured_fen: int = 0  # gross captured discounts drawn from this tranche
    clawed_back_fen: int = 0  # clawbacks of redemptions drawn from this tranche
    rolled_out_fen: int = 0  # leftover sent on at close, or lost
    late_returns_out_fen: int = 0  # holds voided/expired after close, sent on or lost
    sold_out_at_ms: int | None = None

    @property
    def granted_fen(self) -> int:
        return self.captured_fen - self.clawed_back_fen

    @property
    def unreleased_fen(self) -> int:
        return self.base_fen + self.inflow_pending_fen if self.state == SCHEDULED else 0


class PendingRestore(msgspec.Struct, order=True, array_like=True):
    # Field order is the heap order: by time, then a stable tie-break.
    at_ms: int
    redemption_id: str
    refund_id: str
    amount_fen: int
    done: bool = False


class Person(msgspec.Struct, array_like=True):
    person_id: str
    used_fen: int = 0  # captured discounts, minus quota restored
    held_fen: int = 0
    count_total: int = 0  # redemptions not voided/expired
    count_by_day: dict[str, int] = msgspec.field(default_factory=dict)
    restores: list[PendingRestore] = msgspec.field(default_factory=list)


class Refund(msgspec.Struct, array_like=True):
    refund_id: str
    ts_ms: int
    kind: RefundKind
    returned_payable_fen: int
    card_refund_fen: int
    clawback_fen: int
    quota_restore_fen: int
    quota_restore_at_ms: int | None
    fingerprint: str
    client_id: str
    idempotency_key: str
    # The redemption as it stood right after this refund (status, returned, card refunded,
    # clawed back, number of refunds): the 201 body is rebuilt from it, exactly, for an
    # idempotent replay even after later refunds and restarts.
    after: tuple[RedemptionStatus, int, int, int, int]


class Redemption(msgspec.Struct, array_like=True):
    id: str
    campaign_id: str
    day: str
    person_id: str
    platform: str
    order_id: str
    payable_fen: int
    discount_fen: int
    capped: bool
    created_ms: int
    expires_at_ms: int
    lines: list[tuple[str, int, int]]
    fingerprint: str
    client_id: str
    idempotency_key: str
    status: RedemptionStatus = HELD
    captured_ms: int | None = None
    ended_ms: int | None = None  # void/expiry time
    returned_payable_fen: int = 0
    card_refunded_fen: int = 0
    clawed_back_fen: int = 0
    returned_qty: dict[str, int] = msgspec.field(default_factory=dict)
    refunds: list[Refund] = msgspec.field(default_factory=list)

    @property
    def pay_fen(self) -> int:
        return self.payable_fen - self.discount_fen


@dataclass(slots=True)
class Book:
    """One campaign's state."""

    settings: Settings
    schedule: Schedule
    tranches: dict[str, Tranche]
    order_days: list[str]
    persons: dict[str, Person] = field(default_factory=dict)
    lost_fen: int = 0  # expired leftovers + forfeited clawbacks + late returns with nowhere to go
    next_transition: int = 0  # index into order_days of the next tranche to open/close

    @property
    def id(self) -> str:
        return self.settings.campaign.id

    def open_tranche(self) -> Tranche | None:
        """The tranche that is open now, in O(1): transitions alternate open, close."""
        i = self.next_transition
        return self.tranches[self.order_days[i // 2]] if i % 2 == 1 else None

    def tranche_at(self, now_ms: int) -> Tranche | None:
        w = self.schedule.window_at(now_ms)
        return self.tranches[w.date.isoformat()] if w else None

    def next_open_after(self, now_ms: int) -> Tranche | None:
        w = self.schedule.next_window_after(now_ms)
        return self.tranches[w.date.isoformat()] if w else None

    def first_not_closed(self) -> Tranche | None:
        # Transitions alternate open, close per day: index i // 2 is the first day that
        # is not closed (it is open when i is odd, scheduled when i is even).
        i = self.next_transition // 2
        return self.tranches[self.order_days[i]] if i < len(self.order_days) else None

    def remaining_total_fen(self) -> int:
        return sum(t.available_fen + t.unreleased_fen for t in self.tranches.values())


@dataclass(slots=True)
class HoldOutcome:
    redemption: Redemption | None
    reasons: list[Reason]
    replayed: bool = False


def _tranche_from_window(w: TrancheWindow) -> Tranche:
    return Tranche(w.date.isoformat(), w.base_fen, w.opens_at_ms, w.closes_at_ms)


class Ledger:
    """All campaigns of one engine, the cross-campaign order index and idempotency."""

    def __init__(self, settings: Iterable[Settings], node_id: str = "a") -> None:
        self.books: dict[str, Book] = {}
        for s in settings:
            if s.campaign.id in self.books:
                raise InvalidRequest(f"campaign {s.campaign.id!r} loaded twice")
            sched = Schedule(s)
            tranches = {w.date.isoformat(): _tranche_from_window(w) for w in sched.windows}
            self.books[s.campaign.id] = Book(s, sched, tranches, list(tranches))
        self.node_id = node_id
        self.redemptions: dict[str, Redemption] = {}
        # (platform, order_id) -> redemption id of the held or captured redemption (R15).
        self.active_orders: dict[tuple[str, str], str] = {}
        # (client_id, key) -> (what it was used for, redemption id, refund id or "")
        self.idempotency: dict[tuple[str, str], tuple[KeyUse, str, str]] = {}
        self.now_ms = 0
        self.entries_applied = 0
        self._expiries: list[tuple[int, str]] = []
        self._restores: list[tuple[PendingRestore, str, str]] = []  # (restore, campaign, person)
        self._pending: list[AnyEntry] = []
        # Earliest moment a timed event may be due: lets ``advance`` return at once on the
        # hot path. Lowered by every apply that schedules something earlier; 0 = recompute.
        self._next_due_ms = 0

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

    @property
    def next_due_ms(self) -> int:
        """No timed event is due before this moment (0: not known, recompute)."""
        return self._next_due_ms

    def take_pending(self) -> list[AnyEntry]:
        out, self._pending = self._pending, []
        return out

    # ---------------------------------------------------------------- decisions
    def _emit(self, entry: AnyEntry) -> None:
        self.apply(entry)
        self._pending.append(entry)

    def _new_id(self) -> str:
        # Redemptions are never deleted, so the count is a gap-free per-node sequence.
        return f"rd_{self.node_id}{len(self.redemptions) + 1:010d}"

    def advance(self, now_ms: int) -> None:
        """Apply every timed event due at or before ``now_ms``, in time order."""
        now_ms = max(now_ms, self.now_ms)
        if now_ms < self._next_due_ms:
            self.now_ms = now_ms
            return
        for _ in range(MAX_TIMED_EVENTS_PER_ADVANCE):
            due = self._next_timed_event(now_ms)
            if due is None:
                break
            due()
        else:  # pragma: no cover - a bound, not a path
            raise AssertionError("too many timed events in one advance")
        self.now_ms = now_ms
        self._next_due_ms = self._earliest_due_ms()

    def _earliest_due_ms(self) -> int:
        """Lower bound of the next timed event (stale heap tops only make it earlier)."""
        due = 2**62
        if self._restores:
            due = min(due, self._restores[0][0].at_ms)
        if self._expiries:
            due = min(due, self._expiries[0][0])
        for b in self.books.values():
            i = b.next_transition
            if i < 2 * len(b.order_days):
                t = b.tranches[b.order_days[i // 2]]
                due = min(due, t.opens_at_ms if i % 2 == 0 else t.closes_at_ms)
        return due

    def _next_timed_event(self, now_ms: int) -> Callable[[], None] | None:
        """The earliest due event; ties: restore, expiry, close, open (stable order)."""
        best: tuple[int, int, str] | None = None
        thunk: Callable[[], None] | None = None
        while self._restores and self._restores[0][0].done:
            heapq.heappop(self._restores)
        if self._restores and self._restores[0][0].at_ms <= now_ms:
            pr = self._restores[0][0]
            best, thunk = (pr.at_ms, 0, ""), partial(self._due_restore, pr)
        while self._expiries and self.redemptions[self._expiries[0][1]].status != HELD:
            heapq.heappop(self._expiries)
        if self._expiries and self._expiries[0][0] <= now_ms:
            at, rid = self._expiries[0]
            key = (at, 1, rid)
            if best is None or key < best:
                best, thunk = key, partial(self._due_expiry, rid)
        for b in self.books.values():
            i = b.next_transition
            if i >= 2 * len(b.order_days):
                continue
            t = b.tranches[b.order_days[i // 2]]
            at, prio = (t.opens_at_ms, 3) if i % 2 == 0 else (t.closes_at_ms, 2)
            key = (at, prio, b.id)
            if at <= now_ms and (best is None or key < best):
                best, thunk = key, partial(self._due_transition, b.id)
        return thunk

    def _due_restore(self, pr: PendingRestore) -> None:
        self._emit(QuotaRestored(pr.at_ms, pr.redemption_id, pr.refund_id, pr.amount_fen))

    def _due_expiry(self, rid: str) -> None:
        r = self.redemptions[rid]
        why = ReleaseReason.EXPIRE
        self._emit(HoldReleased(r.expires_at_ms, rid, why, self._late_return_day(r)))

    def _due_transition(self, cid: str) -> None:
        b = self.books[cid]
        t = b.tranches[b.order_days[b.next_transition // 2]]
        if b.next_transition % 2 == 0:
            self._emit(TrancheOpened(t.opens_at_ms, cid, t.day, t.base_fen + t.inflow_pending_fen))
            return
        target: str | None = None
        if b.settings.campaign.leftover == "rollover":
            nxt = b.schedule.following(dt.date.fromisoformat(t.day))
            target = nxt.date.isoformat() if nxt else None
        self._emit(TrancheClosed(t.closes_at_ms, cid, t.day, t.available_fen, target))

    def _late_return_day(self, r: Redemption) -> str | None:
        """Where a hold's money goes if its tranche is closed (R4): next not closed."""
        b = self.books[r.campaign_id]
        if b.tranches[r.day].state != CLOSED or b.settings.campaign.leftover == "expire":
            return None
        nxt = b.first_not_closed()
        return nxt.day if nxt else None

    def evaluate_state(
        self, b: Book, order: Order, ev: Evaluation, now_ms: int
    ) -> tuple[list[Reason], Tranche | None, int, bool]:
        """Stateful reasons (R1-R4, R6, R7, R15) and the grant.

        Returns (reasons, tranche, grant, capped)."""
        reasons = list(ev.reasons)
        sched = b.schedule
        tranche: Tranche | None = None
        if now_ms < sched.starts_at_ms:
            reasons.append(reason("campaign_not_started"))
        elif now_ms >= sched.ends_at_ms:
            reasons.append(reason("campaign_ended"))
        else:
            t = b.open_tranche()
            if t is None or not t.opens_at_ms <= now_ms < t.closes_at_ms:
                reasons.append(reason("tranche_not_open"))
            else:
                tranche = t
        lim = b.settings.limits
        p = b.persons.get(order.person.id)
        used = (p.used_fen + p.held_fen) if p else 0
        cap_left = max(0, lim.person_savings_cap_fen - used)
        if cap_left == 0:
            reasons.append(reason("person_cap_reached"))
        grant = min(ev.discount_fen, cap_left)
        capped = grant < ev.discount_fen
        if p is not None and (lim.person_redemptions_total or lim.person_redemptions_per_day):
            today = tranche.day if tranche else sched.local_date(now_ms).isoformat()
            if (lim.person_redemptions_total and p.count_total >= lim.person_redemptions_total) or (
                lim.person_redemptions_per_day
                and p.count_by_day.get(today, 0) >= lim.person_redemptions_per_day
            ):
                reasons.append(reason("person_count_limit"))
        other = self.active_orders.get((order.platform, order.order_id))
        if other is not None and self.redemptions[other].campaign_id != b.id:
            reasons.append(reason("other_government_subsidy"))
        want = grant if grant > 0 else ev.discount_fen
        if tranche is not None and want > 0 and tranche.available_fen < want:
            reasons.append(reason("sold_out"))
            if b.remaining_total_fen() < want:
                reasons.append(reason("budget_exhausted"))
        return (_dedupe(reasons) if reasons else reasons), tranche, grant, capped

    def hold(
        self,
        order: Order,
        ev: Evaluation,
        now_ms: int,
        client_id: str,
        idempotency_key: str,
        fingerprint: str,
    ) -> HoldOutcome:
        """R16 phase one: reserve the discount, or decline with every reason that applies."""
        self.advance(now_ms)
        now_ms = self.now_ms
        b = self.book(order.campaign_id)
        seen = self.idempotency.get((client_id, idempotency_key))
        if seen is not None:
            r = self.redemptions.get(seen[1])
            if seen[0] != KeyUse.HOLD or r is None or r.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request by this client"
                )
            return HoldOutcome(r, [], replayed=True)
        active = self.active_orders.get((order.platform, order.order_id))
        if active is not None and self.redemptions[active].campaign_id == b.id:
            raise Conflict(
                "order_already_redeemed",
                f"order {order.order_id!r} already has redemption {active}",
            )
        reasons, tranche, grant, capped = self.evaluate_state(b, order, ev, now_ms)
        if reasons or tranche is None or grant <= 0:
            if (
                tranche is not None
                and tranche.sold_out_at_ms is None
                and any(c == "sold_out" for c, _ in reasons)
            ):
                self._emit(SoldOut(now_ms, b.id, tranche.day))
            return HoldOutcome(None, reasons or [reason("discount_zero")])
        rid = self._new_id()
        self._emit(
            HoldPlaced(
                now_ms,
                b.id,
                rid,
                tranche.day,
                order.person.id,
                order.platform,
                order.order_id,
                ev.payable_fen,
                grant,
                capped,
                now_ms + b.settings.limits.hold_ttl_s * 1000,
                ev.lines,
                client_id,
                idempotency_key,
                fingerprint,
            )
        )
        return HoldOutcome(self.redemptions[rid], [])

    def capture(self, redemption_id: str, now_ms: int) -> Redemption:
        """R16 phase two: payment succeeded. Idempotent on an already captured hold."""
        self.advance(now_ms)
        r = self.redemption(redemption_id)
        if r.status == HELD:
            self._emit(HoldCaptured(self.now_ms, redemption_id))
        elif r.status in HOLD_ENDED:
            raise Conflict("hold_not_active", f"redemption {redemption_id} is {r.status}")
        return r

    def void(self, redemption_id: str, now_ms: int) -> Redemption:
        """Payment failed or was abandoned: the money returns at once. Idempotent."""
        self.advance(now_ms)
        r = self.redemption(redemption_id)
        if r.status == HELD:
            why = ReleaseReason.VOID
            self._emit(HoldReleased(self.now_ms, redemption_id, why, self._late_return_day(r)))
        elif r.status == RedemptionStatus.EXPIRED:
            raise Conflict("hold_not_active", f"redemption {redemption_id} has expired")
        elif r.status != RedemptionStatus.VOIDED:
            raise Conflict("already_captured", f"redemption {redemption_id} is {r.status}")
        return r

    def refund(
        self,
        redemption_id: str,
        req: RefundRequest,
        now_ms: int,
        client_id: str,
        idempotency_key: str,
        fingerprint: str,
    ) -> tuple[Refund, bool]:
        """R17/R18. Returns (refund, replayed)."""
        self.advance(now_ms)
        now_ms = self.now_ms
        seen = self.idempotency.get((client_id, idempotency_key))
        if seen is not None:
            r0 = self.redemptions.get(seen[1])
            old = next((f for f in r0.refunds if f.refund_id == seen[2]), None) if r0 else None
            if seen[0] != KeyUse.REFUND or old is None or old.fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request by this client"
                )
            return old, True
        r = self.redemption(redemption_id)
        if r.status not in REFUNDABLE:
            raise Conflict("not_captured", f"redemption {redemption_id} is {r.status}")
        if any(f.refund_id == req.refund_id for f in r.refunds):
            raise Conflict("refund_id_reused", f"refund {req.refund_id!r} already recorded")
        if len(r.refunds) >= MAX_REFUNDS_PER_REDEMPTION:
            raise Conflict("too_many_refunds", "refund limit per redemption reached")
        returned, lines = self._returned_value(r, req)
        if returned <= 0 or r.returned_payable_fen + returned > r.payable_fen:
            raise RefundExceedsOrder(
                f"refund of {returned} fen exceeds the "
                f"{r.payable_fen - r.returned_payable_fen} fen still refundable"
            )
        card, claw = refund_split_fen(
            r.payable_fen, r.discount_fen, r.returned_payable_fen, returned
        )
        b = self.books[r.campaign_id]
        pol = b.settings.refunds
        whole = r.returned_payable_fen == 0 and returned == r.payable_fen
        kind = RefundKind.FULL if whole else RefundKind.PARTIAL
        restore, restore_at = 0, None
        timing = pol.full_refund_restores_quota
        if whole and timing != "never":
            restore = r.discount_fen
        elif not whole and pol.partial_refund_restores_quota:
            restore, timing = claw, ("next_day" if timing == "never" else timing)
        if restore:
            restore_at = now_ms if timing == "immediately" else b.schedule.next_midnight_ms(now_ms)
        to_day, to_same = self._clawback_target(b, r, now_ms)
        self._emit(
            RefundRecorded(
                now_ms,
                redemption_id,
                req.refund_id,
                kind,
                returned,
                card,
                claw,
                restore,
                restore_at,
                to_day,
                to_same,
                lines,
                client_id,
                idempotency_key,
                fingerprint,
            )
        )
        # An immediate restore is due now: apply it in the same batch.
        self.advance(now_ms)
        return r.refunds[-1], False

    def _returned_value(
        self, r: Redemption, req: RefundRequest
    ) -> tuple[int, list[tuple[str, int]]]:
        if (req.items is None) == (req.payable_fen is None):
            raise InvalidRequest("give exactly one of items or payable_fen", ("items",))
        if req.payable_fen is not None:
            return req.payable_fen, []
        assert req.items is not None
        if not req.items:
            raise InvalidRequest("items must not be empty", ("items",))
        by_sku: dict[str, int] = {}
        for it in req.items:
            by_sku[it.sku] = by_sku.get(it.sku, 0) + it.quantity
        ordered = {sku: (q, lp) for sku, q, lp in r.lines}
        value = 0
        for sku, qty in by_sku.items():
            if sku not in ordered:
                raise InvalidRequest(f"sku {sku!r} is not in the order", ("items",))
            q, lp = ordered[sku]
            before = r.returned_qty.get(sku, 0)
            if before + qty > q:
                raise RefundExceedsOrder(f"sku {sku!r}: {before + qty} returned of {q} ordered")
            value += returned_value_fen(lp, q, before, qty)
        return value, sorted(by_sku.items())

    def _clawback_target(self, b: Book, r: Redemption, now_ms: int) -> tuple[str | None, bool]:
        """R17: (tranche day the clawback flows to or None = forfeit, same-tranche flag)."""
        policy = b.settings.refunds.clawback_returns_to
        if policy == "forfeit":
            return None, False
        if policy == "same_tranche" and b.tranches[r.day].state == OPEN:
            return r.day, True
        nxt = b.next_open_after(now_ms)
        return (nxt.day if nxt else None), False

    # -------------------------------------------------------------------- apply
    def apply(self, e: AnyEntry) -> None:
        """The only code that changes state; run live and on replay."""
        self.entries_applied += 1
        self.now_ms = max(self.now_ms, e.ts_ms)
        if isinstance(e, HoldPlaced):
            self._apply_hold(e)
        elif isinstance(e, HoldCaptured):
            self._apply_capture(e)
        elif isinstance(e, HoldReleased):
            self._apply_release(e)
        elif isinstance(e, RefundRecorded):
            self._apply_refund(e)
        elif isinstance(e, QuotaRestored):
            self._apply_restore(e)
        elif isinstance(e, TrancheOpened):
            self._apply_open(e)
        elif isinstance(e, TrancheClosed):
            self._apply_close(e)
        else:
            self._apply_soldout(e)

    def _apply_hold(self, e: HoldPlaced) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == OPEN, "hold from a tranche that is not open"
        assert 0 < e.discount_fen <= t.available_fen, "R1/R4: hold exceeds the tranche"
        assert e.redemption_id not in self.redemptions
        p = b.persons.get(e.person_id)
        if p is None:
            p = b.persons[e.person_id] = Person(e.person_id)
        cap = b.settings.limits.person_savings_cap_fen
        assert p.used_fen + p.held_fen + e.discount_fen <= cap, "R7: hold exceeds the cap"
        t.available_fen -= e.discount_fen
        t.held_fen += e.discount_fen
        p.held_fen += e.discount_fen
        p.count_total += 1
        p.count_by_day[e.day] = p.count_by_day.get(e.day, 0) + 1
        r = Redemption(
            e.redemption_id,
            e.campaign_id,
            e.day,
            e.person_id,
            e.platform,
            e.order_id,
            e.payable_fen,
            e.discount_fen,
            e.capped,
            e.ts_ms,
            e.expires_at_ms,
            e.lines,
            e.fingerprint,
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
        b = self.books[r.campaign_id]
        t, p = b.tranches[r.day], b.persons[r.person_id]
        t.held_fen -= r.discount_fen
        t.captured_fen += r.discount_fen
        p.held_fen -= r.discount_fen
        p.used_fen += r.discount_fen
        r.status, r.captured_ms = CAPTURED, e.ts_ms

    def _apply_release(self, e: HoldReleased) -> None:
        r = self.redemptions[e.redemption_id]
        assert r.status == HELD, "a hold ends at most once"
        b = self.books[r.campaign_id]
        t, p = b.tranches[r.day], b.persons[r.person_id]
        t.held_fen -= r.discount_fen
        p.held_fen -= r.discount_fen
        p.count_total -= 1
        p.count_by_day[r.day] -= 1
        if t.state == OPEN:
            # The money never left this tranche's release: it is simply free again.
            t.available_fen += r.discount_fen
            if r.discount_fen:
                t.sold_out_at_ms = None
        else:
            t.late_returns_out_fen += r.discount_fen
            self._send(b, e.to_day, r.discount_fen)
        expired = e.why == ReleaseReason.EXPIRE
        r.status = RedemptionStatus.EXPIRED if expired else RedemptionStatus.VOIDED
        r.ended_ms = e.ts_ms
        del self.active_orders[(r.platform, r.order_id)]

    def _apply_refund(self, e: RefundRecorded) -> None:
        r = self.redemptions[e.redemption_id]
        assert r.status in REFUNDABLE, "refund of a non-captured order"
        b = self.books[r.campaign_id]
        self.note_refund(r, e)
        t = b.tranches[r.day]
        t.clawed_back_fen += e.clawback_fen
        if e.clawback_to_same:
            self._credit(b.tranches[r.day], e.clawback_fen)
        else:
            self._send(b, e.clawback_to_day, e.clawback_fen)
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
        for sku, qty in e.returned_lines:
            r.returned_qty[sku] = r.returned_qty.get(sku, 0) + qty
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
            e.fingerprint,
            e.client_id,
            e.idempotency_key,
            after,
        )
        r.refunds.append(refund)

    def add_restore(self, r: Redemption, pr: PendingRestore) -> None:
        """A quota restore becomes due at ``pr.at_ms`` (a timed event of ``advance``)."""
        p = self.books[r.campaign_id].persons.setdefault(r.person_id, Person(r.person_id))
        p.restores.append(pr)
        heapq.heappush(self._restores, (pr, r.campaign_id, r.person_id))
        self._next_due_ms = min(self._next_due_ms, pr.at_ms)

    def _apply_restore(self, e: QuotaRestored) -> None:
        r = self.redemptions[e.redemption_id]
        p = self.books[r.campaign_id].persons[r.person_id]
        pr = next(x for x in p.restores if x.refund_id == e.refund_id and not x.done)
        assert pr.amount_fen == e.amount_fen
        assert p.used_fen >= e.amount_fen, "restore exceeds what the person used"
        p.used_fen -= e.amount_fen
        pr.done = True
        p.restores.remove(pr)

    def _apply_open(self, e: TrancheOpened) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == SCHEDULED and b.order_days[b.next_transition // 2] == e.day
        assert e.amount_fen == t.base_fen + t.inflow_pending_fen
        t.state = OPEN
        t.released_fen = t.available_fen = e.amount_fen
        t.inflow_pending_fen = 0
        b.next_transition += 1
        self._next_due_ms = 0

    def _apply_close(self, e: TrancheClosed) -> None:
        b = self.books[e.campaign_id]
        t = b.tranches[e.day]
        assert t.state == OPEN and e.leftover_fen == t.available_fen
        t.state = CLOSED
        t.available_fen = 0
        t.rolled_out_fen += e.leftover_fen
        self._send(b, e.to_day, e.leftover_fen)
        b.next_transition += 1
        self._next_due_ms = 0

    def _apply_soldout(self, e: SoldOut) -> None:
        self.books[e.campaign_id].tranches[e.day].sold_out_at_ms = e.ts_ms

    def _credit(self, t: Tranche, amount_fen: int) -> None:
        """New money into an open tranche (inflow, clawback): released again, grantable."""
        t.available_fen += amount_fen
        t.released_fen += amount_fen
        if amount_fen:
            t.sold_out_at_ms = None

    def _send(self, b: Book, day: str | None, amount_fen: int) -> None:
        if not amount_fen:
            return
        if day is None:
            b.lost_fen += amount_fen
            return
        t = b.tranches[day]
        if t.state == SCHEDULED:
            t.inflow_pending_fen += amount_fen
        elif t.state == OPEN:
            self._credit(t, amount_fen)
        else:  # a closed target would strand the money: decisions never choose one
            raise AssertionError(f"money sent to closed tranche {day}")


def _dedupe(reasons: list[Reason]) -> list[Reason]:
    seen: set[str] = set()
    out: list[Reason] = []
    for code, msg in reasons:
        if code not in seen:
            seen.add(code)
            out.append((code, msg))
    return out
