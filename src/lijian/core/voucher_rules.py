"""The decisions about a claimed voucher that the ledger's own decisions call.

A redemption of a claim campaign pays with a voucher (``voucher_terms``: which reasons
apply, and the discount: from the voucher, capped at its value, never from the tranche
again); its hold moves the voucher's money (``voucher_held``); its capture ends the
voucher (``voucher_used``); a full refund gives its use back (``refund_target``,
``voucher_restored``); an unused voucher expires at valid_until (``voucher_expiry``, a
timed event of ``Ledger.advance``). Each emits entries that lijian.core.vouchers applies.
The claim itself is decided in lijian.core.claims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from lijian.core.book import OPEN, Book, Tranche
from lijian.core.entries import (
    AnyEntry,
    LotteryDrawn,
    SoldOut,
    VoucherExpired,
    VoucherHeld,
    VoucherRestored,
    VoucherUsed,
)
from lijian.core.identity import identifiers_of
from lijian.core.order import Order
from lijian.core.redemption import Redemption
from lijian.core.rules import Evaluation, Reason, reason
from lijian.core.status import RefundKind, VoucherStatus
from lijian.core.vouchers import Voucher, Vouchers, lottery_winners

DAY_MS = 86_400_000
Emit = Callable[[AnyEntry], None]
# Reasons about the tranche's money or the person's cap: a voucher's order pays with
# money its claim already took (and counted against the cap).
_NOT_FOR_VOUCHERS = frozenset({"sold_out", "budget_exhausted", "person_cap_reached"})


class _Ledger(Protocol):  # what is read: lijian.core.ledger.Ledger
    @property
    def books(self) -> dict[str, Book]: ...
    @property
    def vouchers(self) -> Vouchers: ...
    @property
    def now_ms(self) -> int: ...
    @property
    def node_id(self) -> str: ...
    @property
    def writer_tag(self) -> str: ...


def new_voucher_id(led: _Ledger) -> str:
    """``vc_`` + node + the writer's tag + a sequence: as a redemption's id (never given
    twice, even by a ledger that lost its last entries)."""
    vid = f"vc_{led.node_id}{led.writer_tag}{len(led.vouchers) + 1:010d}"
    assert vid not in led.vouchers.by_id, vid
    return vid


def valid_until_ms(b: Book, days: int, now_ms: int) -> int:
    """ "day": the close of the tranche of ``now_ms``'s local day (now if there is none);
    "PND": N days from now."""
    if days:
        return now_ms + days * DAY_MS
    t = b.tranches.get(b.schedule.local_date(now_ms).isoformat())
    return max(now_ms, t.closes_at_ms) if t else now_ms


def same_group(b: Book, a: str, c: str) -> bool:
    """The same person, or persons linked into one ([identity] link_by)."""
    if a == c:
        return True
    return bool(b.settings.identity.link_by) and b.identity.find(a) == b.identity.find(c)


def voucher_reason(b: Book, vs: Vouchers, order: Order, now_ms: int) -> Reason | None:
    """Why the order's voucher cannot pay for it, or None."""
    if order.voucher_id is None:
        return reason("voucher_required")
    v = vs.by_id.get(order.voucher_id)
    if v is None or v.campaign_id != b.id or v.status in (VoucherStatus.REGISTERED,
                                                          VoucherStatus.LOST):  # fmt: skip
        return reason("voucher_not_found")
    if not same_group(b, v.person_id, order.person.id):
        return reason("voucher_not_yours")
    if v.status in (VoucherStatus.HELD, VoucherStatus.USED):
        return reason("voucher_used")
    if v.status == VoucherStatus.EXPIRED or now_ms >= v.valid_until_ms:
        return reason("voucher_expired")
    return None


def voucher_terms(
    led: _Ledger,
    b: Book,
    order: Order,
    ev: Evaluation,
    now_ms: int,
    state: tuple[list[Reason], Tranche | None, int, bool],
) -> tuple[list[Reason], Tranche | None, int, bool]:
    """``Ledger.evaluate_state``'s answer for an order of a claim campaign: without the
    tranche's and the cap's reasons, with the voucher's; the grant is the discount capped
    at the voucher's value."""
    reasons, tranche, _, _ = state
    reasons = [x for x in reasons if x[0] not in _NOT_FOR_VOUCHERS]
    why = voucher_reason(b, led.vouchers, order, now_ms)
    if why is not None:
        reasons.append(why)
    if reasons:
        return reasons, tranche, 0, False
    assert order.voucher_id is not None
    if b.settings.identity.link_by and _group_over_cap(b, order, tranche, now_ms):
        return [reason("person_cap_reached")], tranche, 0, False
    v = led.vouchers.by_id[order.voucher_id]
    grant = min(ev.discount_fen, v.value_fen)
    return reasons, tranche, grant, grant < ev.discount_fen


def _group_over_cap(b: Book, order: Order, tranche: Tranche | None, now_ms: int) -> bool:
    """Whether the order's linked group ([identity]) holds more than its savings cap.

    A claim counts its voucher against its own person's cap; accounts that only an
    order links (a shared device, card or phone) may hold more in vouchers together
    than the group's cap. Such an order is declined ``person_cap_reached`` (the voucher
    stays claimed until it is used within the cap or expires): the hold must keep R7
    for the group (``LedgerState._apply_hold`` asserts it, live and on replay). The
    voucher's whole value is in the group's held money already, so the test is
    used + held > cap, whatever part of it the order takes."""
    p = order.person
    ids = identifiers_of(b.settings.identity.link_by, p.device_id, p.card_hash, p.phone_hash)
    keys = b.identity.would_join(p.id, ids)
    day = tranche.day if tranche else b.schedule.local_date(now_ms).isoformat()
    g = b.group_figures(keys, day)
    return g.used_fen + g.held_fen > b.settings.limits.person_savings_cap_fen


def voucher_held(order: Order, rid: str, day: str, grant: int, now_ms: int, emit: Emit) -> None:
    """Right before the order's HoldPlaced: the voucher's discount into the hold's tranche."""
    assert order.voucher_id is not None
    emit(VoucherHeld(now_ms, order.voucher_id, rid, day, grant))


def _give_back_target(b: Book, t: Tranche, now_ms: int) -> tuple[str | None, bool]:
    """Where a voucher's unused value goes: as ``clawback_returns_to`` says (R17's rule)."""
    policy = b.settings.refunds.clawback_returns_to
    if policy == "forfeit":
        return None, False
    if policy == "same_tranche" and t.state == OPEN:
        return t.day, True
    nxt = b.next_open_after(now_ms)
    return (nxt.day if nxt else None), False


def voucher_used(led: _Ledger, r: Redemption, emit: Emit) -> None:
    """After a capture: a voucher's order was paid, the voucher is used."""
    vid = led.vouchers.by_redemption.get(r.id)
    if vid is None:
        return
    v = led.vouchers.by_id[vid]
    b = led.books[v.campaign_id]
    to_day, same = _give_back_target(b, b.tranches[v.money_day], led.now_ms)
    emit(VoucherUsed(led.now_ms, vid, v.value_fen - v.discount_fen, to_day, same))


def voucher_expiry(led: _Ledger, vid: str, emit: Emit) -> None:
    """A claimed voucher's valid_until passed (a timed event)."""
    v = led.vouchers.by_id[vid]
    b = led.books[v.campaign_id]
    at = max(v.valid_until_ms, led.now_ms)
    to_day, same = _give_back_target(b, b.tranches[v.money_day], at)
    emit(VoucherExpired(at, vid, to_day, same))


def next_expiry(led: _Ledger, now_ms: int) -> tuple[int, str] | None:
    """(valid_until, id) of the earliest claimed voucher, if due at ``now_ms``."""
    due = led.vouchers.next_due()
    return due if due is not None and due[0] <= now_ms else None


def lottery_draw(led: _Ledger, b: Book, day: str, emit: Emit) -> None:
    """Right after a lottery day's seed is revealed: its registrations drawn."""
    if b.settings.claims.allocation != "lottery":
        return
    d = b.draws[day]
    assert d.seed is not None
    regs = led.vouchers.registrations.get((b.id, day), [])
    winners = lottery_winners(b, led.vouchers, list(regs), d.seed)
    now = led.now_ms
    emit(
        LotteryDrawn(now, b.id, day, winners, valid_until_ms(b, b.settings.claims.valid_days, now))
    )
    t = b.tranches[day]
    short = t.available_fen < b.settings.claims.voucher_value_fen
    if t.state == OPEN and short and t.sold_out_at_ms is None:
        emit(SoldOut(now, b.id, day))


def refund_target(led: _Ledger, r: Redemption, restoring: bool) -> tuple[str | None, bool] | None:
    """A full refund that restores the quota of a voucher's order: its clawback stays in
    the order's tranche, as the new voucher's value (``voucher_restored``)."""
    if restoring and r.id in led.vouchers.by_redemption:
        return r.day, True
    return None


def voucher_restored(led: _Ledger, r: Redemption, restoring: bool, emit: Emit) -> None:
    """After a full refund that restored the quota: a new voucher, valid as long as the
    first, from now, holding the refund's clawback (the discount)."""
    vid = led.vouchers.by_redemption.get(r.id)
    if not restoring or vid is None or not r.refunds or r.refunds[-1].kind != RefundKind.FULL:
        return
    old: Voucher = led.vouchers.by_id[vid]
    b = led.books[old.campaign_id]
    now = led.now_ms
    until = valid_until_ms(b, b.settings.claims.valid_days, now)
    emit(VoucherRestored(now, b.id, new_voucher_id(led), vid, r.day, r.discount_fen, until))
