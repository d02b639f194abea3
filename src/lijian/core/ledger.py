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
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from lijian.core.book import CLOSED, HELD, OPEN, Book, PendingRestore, Tranche
from lijian.core.detectors import after_grant
from lijian.core.draw import draw_order
from lijian.core.entries import (
    AnyEntry,
    DrawRevealed,
    GroupFull,
    HoldCaptured,
    HoldPlaced,
    HoldReleased,
    IdentifiersSeen,
    LedgerKeyed,
    QuotaRestored,
    RefundRecorded,
    SoldOut,
    TrancheClosed,
    TrancheOpened,
    WindowDecided,
)
from lijian.core.errors import (
    Conflict,
    IdempotencyKeyReused,
    LijianError,
    RefundExceedsOrder,
)
from lijian.core.fingerprint import packed
from lijian.core.identity import GROUP_SIZE_MAX, Identifier, identifiers_of
from lijian.core.order import Order, RefundRequest
from lijian.core.redemption import Redemption, Refund
from lijian.core.refund_value import returned_value
from lijian.core.risk import price_flag
from lijian.core.rules import Evaluation, Reason, reason, refund_split_fen
from lijian.core.settings import Settings
from lijian.core.state import LedgerState
from lijian.core.status import (
    HOLD_ENDED,
    REFUNDABLE,
    KeyUse,
    RedemptionStatus,
    RefundKind,
    ReleaseReason,
)
from lijian.core.voucher_rules import (
    lottery_draw,
    next_expiry,
    refund_target,
    voucher_expiry,
    voucher_held,
    voucher_restored,
    voucher_terms,
    voucher_used,
)
from lijian.core.window import Arrival, seed_of, window_ends_ms

# Limits (TIGER_STYLE): bound every loop that time can make long.
MAX_TIMED_EVENTS_PER_ADVANCE = 10_000_000
MAX_REFUNDS_PER_REDEMPTION = 100

# A writer's tag: six characters of Crockford's base32, lower case (30 bits). Ids of two
# starts collide only if their tags are equal *and* a tail with their sequence was lost.
WRITER_TAG_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
WRITER_TAG_LEN = 6
WRITER_TAG_RE = re.compile(f"[{WRITER_TAG_ALPHABET}]{{{WRITER_TAG_LEN}}}")
WRITER_TAG_NONE = "0" * WRITER_TAG_LEN  # a ledger no writer drives (replay, audit, tests)


@dataclass(slots=True)
class HoldOutcome:
    redemption: Redemption | None
    reasons: list[Reason]
    replayed: bool = False


class Ledger(LedgerState):
    """The deciding half: commands and timed events check the rules against the state
    (:class:`~lijian.core.state.LedgerState`) and emit entries, applied at once."""

    def __init__(
        self, settings: Iterable[Settings], node_id: str = "a", writer_tag: str = WRITER_TAG_NONE
    ) -> None:
        super().__init__(settings)
        self.node_id = node_id
        # Part of every redemption id this ledger decides (``_new_id``): the writer draws
        # a fresh one each time it starts (lijian.engine), so ids stay unique for the
        # ledger's life even if the entries after some point are lost.
        assert WRITER_TAG_RE.fullmatch(writer_tag), writer_tag
        self.writer_tag = writer_tag
        self._pending: list[AnyEntry] = []
        # (campaign, day) → that day's draw seed. The engine derives it from the ledger
        # key (lijian.core.draw.derive_seed); without it no committed seed is revealed.
        self.seeds: Callable[[str, str], str] | None = None
        # The id of the engine's ledger key: recorded (LedgerKeyed) right before the
        # first entry that depends on the key (keyed identifiers, a draw's commitment).
        self.bind_key_id: str | None = None

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

    def emit(self, entry: AnyEntry) -> None:
        """Apply a decided entry and queue it for the commit (decisions outside this
        class: the admission window's, the draw seeds)."""
        self._emit(entry)

    def bind_key(self) -> None:
        """Record the key's id before the first entry that depends on the key: a start
        with another key is refused from then on (lijian.ledger_key). A ledger that
        never used it (no linking, no window) stays exactly as without a key."""
        if self.key_id is None and self.bind_key_id is not None:
            self._emit(LedgerKeyed(self.now_ms, self.bind_key_id))

    def see_identifiers(self, b: Book, order: Order) -> None:
        """Record the order's ``link_by`` identifiers that are new to its person's group
        (an ``IdentifiersSeen`` entry): from now on the groups that own them are one.

        Unless the joined group would hold more than GROUP_SIZE_MAX persons: then nothing
        is recorded (``evaluate_state`` declines the order with ``identity_group_full``)
        and the group is flagged once (``GroupFull``)."""
        if not b.settings.identity.link_by:
            return
        pid = order.person.id
        g = b.identity
        new = g.new_identifiers(pid, identifiers(b, order))
        if not new:
            return
        keys = g.would_join(pid, new)
        size = g.joined_size(keys)
        if size > GROUP_SIZE_MAX:
            largest = max(keys, key=g.size)  # the group that is full: flagged once
            if largest not in g.full:
                self._emit(GroupFull(self.now_ms, b.id, largest, pid, size))
            return
        # The entry names the groups joined, not their members: its size stays flat.
        self.bind_key()
        self._emit(IdentifiersSeen(self.now_ms, b.id, pid, new, keys[1:]))

    def _new_id(self) -> str:
        # ``rd_`` + node + this writer's tag + a sequence. The count alone is not enough: a
        # ledger that lost its last entries (an asynchronous replica promoted, a restored
        # backup) has the count it had before them, and would give their ids again to
        # other orders. The tag is new at each start of a writer, so the ids it gives were
        # never given before, whatever was lost; the sequence orders them within a start.
        rid = f"rd_{self.node_id}{self.writer_tag}{len(self.redemptions) + 1:010d}"
        assert rid not in self.redemptions, rid
        return rid

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
        if self.seeds is not None:
            for b in self.books.values():
                if b.unrevealed:
                    due = min(due, window_ends_ms(b, b.unrevealed[0]))
        if self._restores:
            due = min(due, self._restores[0][0].at_ms)
        if self._expiries:
            due = min(due, self._expiries[0][0])
        if (v := self.vouchers.next_due()) is not None:
            due = min(due, v[0])
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
        if (v := next_expiry(self, now_ms)) is not None and (
            best is None or (v[0], 1, v[1]) < best
        ):
            best, thunk = (v[0], 1, v[1]), partial(voucher_expiry, self, v[1], self._emit)
        for b in self.books.values():
            if self.seeds is not None and b.unrevealed:
                at = window_ends_ms(b, b.unrevealed[0])
                key = (at, 4, b.id)
                if at <= now_ms and (best is None or key < best):
                    best, thunk = key, partial(self._due_reveal, b.id)
            i = b.next_transition
            if i >= 2 * len(b.order_days):
                continue
            t = b.tranches[b.order_days[i // 2]]
            at, prio = (t.opens_at_ms, 3) if i % 2 == 0 else (t.closes_at_ms, 2)
            key = (at, prio, b.id)
            if at <= now_ms and (best is None or key < best):
                best, thunk = key, partial(self._due_transition, b.id)
        return thunk

    def _due_reveal(self, cid: str) -> None:
        """A day's admission window has ended: its seed goes into the ledger."""
        assert self.seeds is not None
        b = self.books[cid]
        day = b.unrevealed[0]
        self._emit(DrawRevealed(window_ends_ms(b, day), cid, day, self.seeds(cid, day)))
        lottery_draw(self, b, day, self._emit)  # a lottery of vouchers: drawn with it

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
            # Not to a day an "end" amendment cancelled: that money is lost, as on the last day.
            target = nxt.date.isoformat() if nxt and b.serves(nxt.date.isoformat()) else None
        self._emit(TrancheClosed(t.closes_at_ms, cid, t.day, t.available_fen, target))

    def _late_return_day(self, r: Redemption) -> str | None:
        """Where a hold's money goes if its tranche is closed (R4): next not closed."""
        b = self.books[r.campaign_id]
        if b.tranches[r.day].state != CLOSED or b.settings.campaign.leftover == "expire":
            return None
        nxt = b.first_not_closed()
        return nxt.day if nxt else None

    def evaluate_state(
        self, b: Book, order: Order, ev: Evaluation, now_ms: int, elsewhere: bool = False
    ) -> tuple[list[Reason], Tranche | None, int, bool]:
        """Stateful reasons (R1-R4, R6, R7, R15) and the grant; ``elsewhere``: the order
        draws on another ledger's campaign (R15 across shards: cluster/order_claims.py).

        Returns (reasons, tranche, grant, capped)."""
        reasons = list(ev.reasons)
        if b.paused:
            reasons.append(reason("campaign_paused"))
        ch = self.changes
        if ch.persons and ch.person_blocked(b.id, self.members_of(b, order)):
            reasons.append(reason("person_blocked"))
        if ch.skus and ch.sku_blocked(b.id, order.platform, [sku for sku, _, _ in ev.lines]):
            reasons.append(reason("sku_blocked"))
        sched = b.schedule
        tranche: Tranche | None = None
        if now_ms < sched.starts_at_ms:
            reasons.append(reason("campaign_not_started"))
        elif now_ms >= b.ends_at_ms:
            reasons.append(reason("campaign_ended"))
        else:
            t = b.open_tranche()
            if t is None or not t.opens_at_ms <= now_ms < t.closes_at_ms:
                reasons.append(reason("tranche_not_open"))
            else:
                tranche = t
        lim = b.settings.limits
        counted = lim.person_redemptions_total or lim.person_redemptions_per_day
        p = b.persons.get(order.person.id)
        used = (p.used_fen + p.held_fen) if p else 0
        if p is not None and counted:
            today = tranche.day if tranche else sched.local_date(now_ms).isoformat()
            count_total, count_today = p.count_total, p.count_on(today)
        else:
            count_total = count_today = 0
        if b.settings.identity.link_by:
            # One person across identities: the groups this order's identifiers join
            # (read only; Ledger.hold records them), from their running totals.
            keys = b.identity.would_join(order.person.id, identifiers(b, order))
            today = tranche.day if tranche else sched.local_date(now_ms).isoformat()
            g = b.group_figures(keys, today)
            used, count_total, count_today = g.used_fen + g.held_fen, g.count_total, g.count_today
            if len(keys) > 1 and b.identity.joined_size(keys) > GROUP_SIZE_MAX:
                reasons.append(reason("identity_group_full"))
        cap_left = max(0, lim.person_savings_cap_fen - used)
        if cap_left == 0:
            reasons.append(reason("person_cap_reached"))
        grant = min(ev.discount_fen, cap_left)
        capped = grant < ev.discount_fen
        if counted and (
            (lim.person_redemptions_total and count_total >= lim.person_redemptions_total)
            or (lim.person_redemptions_per_day and count_today >= lim.person_redemptions_per_day)
        ):
            reasons.append(reason("person_count_limit"))
        reasons += self.items.reasons(b, order, ev, self.members_of) if ev.units else []
        other = self.active_orders.get((order.platform, order.order_id))
        if elsewhere or (other is not None and self.redemptions[other].campaign_id != b.id):
            reasons.append(reason("other_government_subsidy"))
        want = grant if grant > 0 else ev.discount_fen
        if tranche is not None and want > 0 and tranche.available_fen < want:
            reasons.append(reason("sold_out"))
            if b.remaining_total_fen() < want:
                reasons.append(reason("budget_exhausted"))
        return (_dedupe(reasons) if reasons else reasons), tranche, grant, capped

    def order_terms(
        self, b: Book, order: Order, ev: Evaluation, now_ms: int, elsewhere: bool = False
    ) -> tuple[list[Reason], Tranche | None, int, bool]:
        """``evaluate_state``; for a claim campaign, the terms of the order's voucher."""
        state = self.evaluate_state(b, order, ev, now_ms, elsewhere)
        return voucher_terms(self, b, order, ev, now_ms, state) if b.settings.claims.on else state

    @staticmethod
    def members_of(b: Book, order: Order) -> list[str]:
        """The persons a block of any of them covers: the order's group ([identity])."""
        if not b.settings.identity.link_by:
            return [order.person.id]
        return b.identity.would_be_members(order.person.id, identifiers(b, order))

    def sold_out_by(self, b: Book, t: Tranche | None, reasons: list[Reason], code: str) -> None:
        """A hold's or a claim's decline for want of money (``code``) sells ``t`` out, once."""
        if t is not None and t.sold_out_at_ms is None and any(c == code for c, _ in reasons):
            self._emit(SoldOut(self.now_ms, b.id, t.day))

    def hold(
        self,
        order: Order,
        ev: Evaluation,
        now_ms: int,
        client_id: str,
        idempotency_key: str,
        fingerprint: str,
        elsewhere: bool = False,
    ) -> HoldOutcome:
        """R16 phase one: reserve the discount, or decline with every reason that applies."""
        self.advance(now_ms)
        now_ms = self.now_ms
        b = self.book(order.campaign_id)
        seen = self.idempotency.get((client_id, idempotency_key))
        if seen is not None:
            r = self.redemptions.get(seen[1])
            if seen[0] != KeyUse.HOLD or r is None or r.fingerprint != packed(fingerprint):
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
        self.see_identifiers(b, order)
        reasons, tranche, grant, capped = self.order_terms(b, order, ev, now_ms, elsewhere)
        assert not (elsewhere and not reasons), "an order drawing elsewhere is declined"
        if reasons or tranche is None or grant <= 0:
            self.sold_out_by(b, tranche, reasons, "sold_out")
            return HoldOutcome(None, reasons or [reason("discount_zero")])
        rid = self._new_id()
        if b.settings.claims.on:
            voucher_held(order, rid, tranche.day, grant, now_ms, self._emit)
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
        for items in self.items.entry(now_ms, b, rid, order.person.id, ev):  # trade-in
            self._emit(items)
        if ev.over_reference:  # [risk] price_action "flag": granted, flagged for review
            self._emit(price_flag(now_ms, b.id, self.risk.next_id(), tranche.day,
                                  order.person.id, rid, ev.over_reference))  # fmt: skip
        if b.settings.risk.detectors.on:  # detectors over the ledger (core/detectors.py)
            after_grant(self, b, order, rid, ev.categories)
        return HoldOutcome(self.redemptions[rid], [])

    def decide_window(
        self, campaign_id: str, day: str, arrivals: list[Arrival], now_ms: int
    ) -> list[HoldOutcome | LijianError]:
        """Decide a window's requests (given in arrival order); one result per arrival, in
        arrival order: the hold outcome, or the error a lone request would have raised."""
        self.advance(now_ms)
        b = self.book(campaign_id)
        seed = seed_of(b, day)
        assert seed is not None, "a window is decided after its seed was revealed"
        for a in arrivals:
            self.see_identifiers(b, a.order)
        keys = [b.identity.find(a.order.person.id) for a in arrivals]
        out: list[HoldOutcome | LijianError | None] = [None] * len(arrivals)
        for i in draw_order(seed, campaign_id, day, keys):
            a = arrivals[i]
            try:
                out[i] = self.hold(
                    a.order, a.evaluation, now_ms, a.client_id, a.idempotency_key, a.fingerprint
                )
            except LijianError as exc:
                out[i] = exc
        self.emit(
            WindowDecided(
                self.now_ms,
                campaign_id,
                day,
                [(a.client_id, a.idempotency_key, a.order.person.id) for a in arrivals],
            )
        )
        return [o for o in out if o is not None]

    def capture(self, redemption_id: str, now_ms: int) -> Redemption:
        """R16 phase two: payment succeeded. Idempotent on an already captured hold."""
        self.advance(now_ms)
        r = self.redemption(redemption_id)
        if r.status == HELD:
            self._emit(HoldCaptured(self.now_ms, redemption_id))
            voucher_used(self, r, self._emit)
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
            if seen[0] != KeyUse.REFUND or old is None or old.fingerprint != packed(fingerprint):
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
        returned, lines = returned_value(r, req)
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
        vt = refund_target(self, r, restoring := whole and restore > 0)
        to_day, to_same = vt or self._clawback_target(b, r, now_ms)
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
        voucher_restored(self, r, restoring, self._emit)  # a voucher's use given back
        return r.refunds[-1], False

    def _clawback_target(self, b: Book, r: Redemption, now_ms: int) -> tuple[str | None, bool]:
        """R17: (tranche day the clawback flows to or None = forfeit, same-tranche flag)."""
        policy = b.settings.refunds.clawback_returns_to
        if policy == "forfeit":
            return None, False
        if policy == "same_tranche" and b.tranches[r.day].state == OPEN:
            return r.day, True
        nxt = b.next_open_after(now_ms)
        return (nxt.day if nxt else None), False


def identifiers(b: Book, order: Order) -> list[Identifier]:
    """The order's identifiers that the campaign's ``[identity] link_by`` lists."""
    p = order.person
    return identifiers_of(b.settings.identity.link_by, p.device_id, p.card_hash, p.phone_hash)


def _dedupe(reasons: list[Reason]) -> list[Reason]:
    seen: set[str] = set()
    out: list[Reason] = []
    for code, msg in reasons:
        if code not in seen:
            seen.add(code)
            out.append((code, msg))
    return out
