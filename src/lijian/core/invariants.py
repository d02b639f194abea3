"""The invariants of docs/ARCHITECTURE.md, as a function that lists every violation.

Called after every step of the property tests, by ``lijian audit`` after a replay from
zero, and by the engine after recovery. An empty list means the ledger is sound.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter, itemgetter, sub

from lijian.core.book import OPEN, SCHEDULED, Book, Person, Tranche
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
    HoldPlaced,
    IdentifiersSeen,
    ItemsSubsidised,
    LedgerKeyed,
    LotteryDrawn,
    RiskFlagged,
    RiskNoted,
    SoldOut,
    TrancheClosed,
    TrancheOpened,
    WindowDecided,
)
from lijian.core.ledger import Ledger
from lijian.core.redemption import Redemption, any_refunded, fens
from lijian.core.risk import flag_number
from lijian.core.status import AmendmentStatus, RedemptionStatus
from lijian.core.voucher_checks import voucher_problems

REFUNDED = RedemptionStatus.REFUNDED
_STATUS = attrgetter("status")

# Entries that move no balance (the window's holds are entries of their own).
NO_BALANCE = (
    DrawSeeded,
    DrawCommitted,
    DrawRevealed,
    WindowDecided,
    IdentifiersSeen,
    GroupFull,
    LedgerKeyed,
    ClockMoved,
    RiskFlagged,
    ItemsSubsidised,
    RiskNoted,
    FlagReviewed,
)


def check_invariants(ledger: Ledger) -> list[str]:
    out: list[str] = []
    for b in ledger.books.values():
        out += money_problems(b)
        out += person_problems(b.id, b.settings.limits.person_savings_cap_fen, b.persons.values())
        out += window_problems(b)
    for r in _to_check_one_by_one(list(ledger.redemptions.values())):
        out += redemption_problems(r)
    out += change_problems(ledger)
    out += risk_problems(ledger)
    out += voucher_problems(ledger)
    out += ledger.items.problems(ledger.redemptions)  # trade-in units and serials
    return out


def _to_check_one_by_one(reds: list[Redemption]) -> list[Redemption]:
    """The checks of redemption_problems all hold for a redemption never refunded whose
    discount is in 0..payable: only the others are checked one by one. Which those are is
    asked of all at once first, in C (a million at a city's size, at every restart):
    most ledgers' answer is none, refunds being few."""
    fen = list(fens(reds))
    discounts = list(map(itemgetter(1), fen))
    if (
        min(discounts, default=0) >= 0
        and min(map(sub, map(itemgetter(0), fen), discounts), default=0) >= 0  # d <= p
        and REFUNDED not in set(map(_STATUS, reds))
        and not any_refunded(reds)
    ):
        return []
    return [
        r
        for r, (p, d) in zip(reds, fen, strict=True)
        if r.ever_refunded or r.status == REFUNDED or not 0 <= d <= p
    ]


def risk_problems(ledger: Ledger) -> list[str]:
    """Every flag names redemptions of its own campaign that the ledger holds, on a day
    of that campaign, and the flags are numbered 1..n once each."""
    out: list[str] = []
    flags = ledger.risk.all()
    if [flag_number(f.flag_id) for f in flags] != list(range(1, len(flags) + 1)):
        out.append("risk flags are not numbered 1..n once each")
    for f in flags:
        b = ledger.books.get(f.campaign_id)
        if b is None or f.day not in b.tranches:
            out.append(f"{f.flag_id}: no day {f.day} of campaign {f.campaign_id}")
        for rid in f.redemption_ids:
            r = ledger.redemptions.get(rid)
            if r is None or r.campaign_id != f.campaign_id:
                out.append(f"{f.flag_id}: names redemption {rid} not of {f.campaign_id}")
        persons = b.persons if b is not None else {}
        out += [f"{f.flag_id}: names person {p} with no redemption in {f.campaign_id}"
                for p in f.person_ids if p not in persons]  # fmt: skip
    for fid, rv in ledger.risk.reviews.items():
        blocked = rv.block_id is None or rv.block_id in ledger.changes.blocks
        if fid in ledger.risk.open.get(rv.campaign_id, {}) or not blocked:
            out.append(f"{fid}: reviewed ({rv.action}) but open, or its block unknown")
    return out


def change_problems(ledger: Ledger, campaign_id: str | None = None) -> list[str]:
    """Operators' changes (of one campaign, or all): four eyes on every applied amendment,
    every active block enforced and nothing else."""
    out: list[str] = []
    ch = ledger.changes
    for a in ch.amendments.values():
        if campaign_id not in (None, a.campaign_id):
            continue
        if a.status == AmendmentStatus.APPLIED and a.decided_by == a.proposed_by:
            out.append(f"{a.campaign_id} amendment {a.id}: approved by its proposer")
    for cid in ledger.books if campaign_id is None else [campaign_id]:
        active = sum(1 for bl in ch.blocks.values() if bl.active and bl.campaign_id == cid)
        indexed = sum(len(v) for k, v in ch.persons.items() if k[0] == cid)
        indexed += sum(len(v) for k, v in ch.skus.items() if k[0] == cid)
        if active != indexed:
            out.append(f"{cid} changes: {active} active blocks but {indexed} enforced")
    return out


# The parts of check_invariants, also run one by one (lijian.events.audits checks a large
# ledger in slices). Each part reads only what its own figures need.


def money_problems(b: Book) -> list[str]:
    """A campaign's tranches, conservation and R1: figures to be read at one moment."""
    out: list[str] = []
    cid = b.id
    budget = b.budget_fen  # the settings' plus applied budget amendments
    held = granted = available = unreleased = 0
    for t in b.tranches.values():
        where = f"{cid} tranche {t.day}"
        for name in ("available_fen", "held_fen", "captured_fen", "clawed_back_fen"):
            if getattr(t, name) < 0:
                out.append(f"{where}: {name} is negative ({getattr(t, name)})")
        if t.state != OPEN and t.available_fen:
            out.append(f"{where}: {t.state} tranche has available money")
        if t.state == SCHEDULED and t.base_fen + t.inflow_pending_fen < 0:
            out.append(f"{where}: an amendment cut the unreleased money below zero")
        if not b.serves(t.day) and t.unreleased_fen:
            out.append(f"{where}: a day after the campaign's end still has money")
        if t.state != SCHEDULED and t.inflow_pending_fen:
            out.append(f"{where}: released tranche still has pending inflow")
        # Per tranche: vouchers' value + granted + held ≤ released (R1, R4).
        if t.state != SCHEDULED and t.voucher_fen + t.granted_fen + t.held_fen > t.released_fen:
            out.append(
                f"{where}: vouchers {t.voucher_fen} + granted {t.granted_fen} + held "
                f"{t.held_fen} > released {t.released_fen}"
            )
        flows = t.available_fen + t.held_fen + t.captured_fen + t.rolled_out_fen
        flows += t.late_returns_out_fen + t.voucher_fen
        if t.state != SCHEDULED and t.released_fen != flows:
            out.append(
                f"{where}: released {t.released_fen} != available + held + captured + "
                f"rolled out + late returns out ({flows})"
            )
        held += t.held_fen + t.voucher_fen  # a claimed voucher's value is reserved money
        granted += t.granted_fen
        available += t.available_fen
        unreleased += t.unreleased_fen
    if b.unreleased_fen != unreleased:
        out.append(f"{cid}: unreleased {b.unreleased_fen} kept, {unreleased} in the tranches")
    if b.remaining_total_fen() != available + unreleased:
        out.append(f"{cid}: remaining {b.remaining_total_fen()} != {available + unreleased}")
    # Conservation: every fen of the budget is in exactly one place.
    total = unreleased + available + held + granted + b.lost_fen + b.withdrawn_fen
    if total != budget:
        out.append(
            f"{cid}: money not conserved: unreleased {unreleased} + available {available} "
            f"+ held {held} + granted {granted} + lost {b.lost_fen} + withdrawn "
            f"{b.withdrawn_fen} = {total} != budget {budget}"
        )
    if granted + held > budget - unreleased - b.lost_fen - b.withdrawn_fen:
        out.append(f"{cid}: R1 granted + held exceeds released")
    # No applied cut left the budget below what was granted plus held from it.
    if granted + held > budget:
        out.append(f"{cid}: budget {budget} below granted {granted} + held {held}")
    return out


def person_problems(cid: str, cap_fen: int, persons: Iterable[Person]) -> list[str]:
    """R7 and signs, person by person."""
    out: list[str] = []
    for p in persons:
        if p.used_fen < 0 or p.held_fen < 0:
            out.append(f"{cid} person {p.person_id}: negative used/held")
        if p.used_fen + p.held_fen > cap_fen:
            out.append(
                f"{cid} person {p.person_id}: R7 used {p.used_fen} + held {p.held_fen} "
                f"> cap {cap_fen}"
            )
    return out


def window_problems(b: Book) -> list[str]:
    """Admission windows: every grant of a decision in the order the stored seed gives
    (recomputed when WindowDecided was applied; the group cap is checked per hold by
    apply itself, so a replay from zero fails on any grant over a group's cap)."""
    out = [f"{b.id} window {w.day}: {x}" for w in b.windows.values() for x in w.problems]
    out += [f"{b.id} draw {d.day}: {d.problem}" for d in b.draws.values() if d.problem]
    return out


def redemption_problems(r: Redemption) -> list[str]:
    """One redemption's refunds and clawbacks against what was paid and granted."""
    out: list[str] = []
    where = f"redemption {r.id}"
    if r.card_refunded_fen > r.pay_fen:
        out.append(f"{where}: card refunds {r.card_refunded_fen} > paid {r.pay_fen}")
    if r.clawed_back_fen > r.discount_fen:
        out.append(f"{where}: clawbacks exceed the discount")
    if r.status == RedemptionStatus.REFUNDED and r.card_refunded_fen != r.pay_fen:
        out.append(f"{where}: fully refunded but card refunds != paid")
    if r.card_refunded_fen + r.clawed_back_fen != r.returned_payable_fen:
        out.append(f"{where}: card refund + clawback != returned value")
    return out


def tranche_balances(cid: str, t: Tranche) -> list[tuple[str, int]]:
    """One tranche's stored balances, by key: the one naming of what the store keeps."""
    k = f"{cid}/tranche/{t.day}/"
    return [
        (k + "released", t.released_fen),
        (k + "available", t.available_fen),
        (k + "held", t.held_fen),
        (k + "captured", t.captured_fen),
        (k + "clawed_back", t.clawed_back_fen),
        (k + "pending", t.inflow_pending_fen),
    ]


def balances(ledger: Ledger) -> dict[str, int]:
    """A flat map of every balance, to compare a replay with stored figures."""
    out: dict[str, int] = {}
    for b in ledger.books.values():
        out[f"{b.id}/lost"] = b.lost_fen
        for t in b.tranches.values():
            out.update(tranche_balances(b.id, t))
    return out


def touched_balances(
    ledger: Ledger, entries: list[AnyEntry]
) -> tuple[list[tuple[str, int]], list[tuple[str, str, int, int]]]:
    """The tranche balances and person rows a batch of entries changed, to store with it."""
    tranches: set[tuple[str, str]] = set()
    persons: set[tuple[str, str]] = set()
    books = ledger.books
    for e in entries:
        if isinstance(e, HoldPlaced):
            tranches.add((e.campaign_id, e.day))
            persons.add((e.campaign_id, e.person_id))
        elif isinstance(e, (TrancheOpened, TrancheClosed, SoldOut)):
            # A close can send money to the next tranche: store every tranche then.
            tranches.update((e.campaign_id, d) for d in books[e.campaign_id].tranches)
        elif isinstance(e, VOUCHER_ENTRIES):  # its vouchers' persons and every tranche
            vs = ledger.vouchers
            ids = e.winners if isinstance(e, LotteryDrawn) else [e.voucher_id]
            for v in (vs.by_id[vid] for vid in ids):
                persons.add((v.campaign_id, v.person_id))
                tranches.update((v.campaign_id, d) for d in books[v.campaign_id].tranches)
        elif isinstance(e, NO_BALANCE):
            continue  # no balance moves (the window's holds are entries of their own)
        elif isinstance(e, CHANGE_ENTRIES):
            if isinstance(e, AmendmentApplied):  # only an applied amendment moves money
                tranches.update((e.campaign_id, d) for d in books[e.campaign_id].tranches)
            continue
        else:
            r = ledger.redemptions[e.redemption_id]
            persons.add((r.campaign_id, r.person_id))
            tranches.update((r.campaign_id, d) for d in books[r.campaign_id].tranches)
    flat: list[tuple[str, int]] = []
    for cid, day in sorted(tranches):
        b = books[cid]
        flat += tranche_balances(cid, b.tranches[day])
        flat.append((f"{cid}/lost", b.lost_fen))
    rows = []
    for cid, pid in persons:
        p = books[cid].persons[pid]
        rows.append((cid, pid, p.used_fen, p.held_fen))
    return flat, rows
